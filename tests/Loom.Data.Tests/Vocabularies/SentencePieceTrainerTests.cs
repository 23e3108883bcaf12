using System.Text;

namespace Loom.Data.Tests;

public class SentencePieceTrainerTests
{
    /// <summary>Skips the test (fails it under LOOM_TESTS_REQUIRE_ALL=1) where Debian's sentencepiece tools are missing.</summary>
    private static void RequireSentencePieceTools()
    {
        foreach (string program in new[] { "spm_train", "spm_encode", "spm_decode" })
            Requires.That(Requires.OnPath(program), $"{program} is not on PATH: apt-get install sentencepiece");
    }

    /// <summary>About 80 KB of lines of made-up syllable words, double spaces and numbers: varied enough for 400 unigram pieces.</summary>
    private static string Corpus()
    {
        string[] syllables = ["ka", "to", "ri", "mu", "sel", "an", "dor", "vi", "qu", "eth", "pra", "zo", "nn", "lé", "ï", "st", "ght", "ow"];
        var rng = new Random(3);
        var sb = new StringBuilder();
        for (int line = 0; line < 2000; line++)
        {
            for (int w = 0; w < 8; w++)
            {
                for (int k = rng.Next(1, 4); k > 0; k--) sb.Append(syllables[rng.Next(syllables.Length)]);
                sb.Append(rng.Next(10) == 0 ? "  " : " ");
            }
            sb.Append(rng.Next(100000)).Append('\n');
        }
        return sb.ToString();
    }

    private static string TrainSmall(TempDirectory dir, SentencePieceModelType type)
    {
        string text = dir.Write("corpus.txt", Corpus());
        string modelPath = Path.Combine(dir.Path, "out", "vocab.model");
        var options = new SentencePieceTrainerOptions { VocabSize = 400, ModelType = type, Threads = 2 };
        Assert.Equal(modelPath, SentencePieceTrainer.Train(text, modelPath, options));
        // Only the model is left: no .vocab, no scratch folder.
        Assert.Equal(["vocab.model"], Directory.GetFileSystemEntries(Path.GetDirectoryName(modelPath)!).Select(Path.GetFileName));
        return modelPath;
    }

    [SkippableFact]
    public void TrainedBpeModelLoadsAsSentencePieceVocabularyAndRoundTripsRandomUnicodeExactly()
    {
        RequireSentencePieceTools(); // MissingProgramGivesTheInstallCommand covers the message where it is missing
        using var dir = new TempDirectory();
        var v = new SentencePieceVocabulary(TrainSmall(dir, SentencePieceModelType.Bpe));
        Assert.Equal(400, v.PieceCount);
        Assert.Equal(400, v.Size); // PAD and EOS are real pieces, so no extra ids
        Assert.Equal(0, v.PadId);
        Assert.Equal(1, v.EosId);
        var rng = new Random(99);
        for (int trial = 0; trial < 100; trial++)
        {
            string s = TiktokenVocabularyTests.RandomText(rng, rng.Next(1, 40));
            Assert.Equal(s, v.Decode(v.Encode(s)));
        }
        // Digits are split one per piece.
        Assert.Equal(4, v.Encode("2024").Count(id => v.Decode([id]).Any(char.IsDigit)));
    }

    [SkippableFact]
    public void TrainedUnigramModelRoundTripsRandomUnicodeExactlyThroughSpmEncode()
    {
        RequireSentencePieceTools();
        using var dir = new TempDirectory();
        string modelPath = TrainSmall(dir, SentencePieceModelType.Unigram);
        // Checked with spm_encode/spm_decode (same Debian package): Microsoft.ML.Tokenizers 2.0.1
        // mis-numbers unigram byte-fallback pieces, so SentencePieceVocabulary cannot check it yet.
        var rng = new Random(98);
        var lines = Enumerable.Range(0, 50)
            .Select(_ => TiktokenVocabularyTests.RandomText(rng, rng.Next(1, 40)).Replace('\n', ' ').Replace('\r', ' '))
            .ToArray();
        string input = dir.Write("lines.txt", string.Join('\n', lines) + "\n");
        var encoded = ProcessRunner.Run("spm_encode", [$"--model={modelPath}", "--output_format=id", $"--input={input}"], dir.Path);
        Assert.Equal(0, encoded.ExitCode);
        var ids = encoded.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).SelectMany(l => l.Split(' ')).Select(int.Parse);
        Assert.All(ids, id => Assert.InRange(id, 0, 399));
        string idsFile = dir.Write("ids.txt", encoded.StandardOutput);
        var decoded = ProcessRunner.Run("spm_decode", [$"--model={modelPath}", "--input_format=id", $"--input={idsFile}"], dir.Path);
        Assert.Equal(0, decoded.ExitCode);
        Assert.Equal(lines, decoded.StandardOutput.Split('\n')[..lines.Length]);
    }

    [Fact]
    public void MissingProgramGivesTheInstallCommand()
    {
        using var dir = new TempDirectory();
        string text = dir.Write("corpus.txt", "hello\n");
        var options = new SentencePieceTrainerOptions { VocabSize = 300, Program = "/nonexistent/spm_train" };
        var e = Assert.Throws<InvalidOperationException>(() => SentencePieceTrainer.Train(text, Path.Combine(dir.Path, "m.model"), options));
        Assert.Contains("apt-get install sentencepiece", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, "m.model")));
    }

    [SkippableFact]
    public void FailedTrainingLeavesTheOldModelAndNoScratch()
    {
        RequireSentencePieceTools();
        using var dir = new TempDirectory();
        string text = dir.Write("corpus.txt", "tiny\n");
        string model = dir.Write("m.model", "old");
        // A 5-byte corpus cannot fill 100,000 pieces, so spm_train fails.
        var options = new SentencePieceTrainerOptions { VocabSize = 100_000, ModelType = SentencePieceModelType.Bpe };
        var e = Assert.Throws<InvalidOperationException>(() => SentencePieceTrainer.Train(text, model, options));
        Assert.Contains("spm_train failed", e.Message);
        Assert.Contains("Vocabulary size", e.Message); // spm_train's own reason, not its generic last line
        Assert.Equal("old", File.ReadAllText(model));
        Assert.Equal(2, Directory.GetFileSystemEntries(dir.Path).Length);
    }

    [Fact]
    public void ArgumentsCarryPaLMsLosslessSettings()
    {
        var args = SentencePieceTrainer.Arguments("in.txt", "p", new SentencePieceTrainerOptions { VocabSize = 1000, ModelType = SentencePieceModelType.Bpe });
        Assert.Contains("--byte_fallback=true", args);
        Assert.Contains("--split_digits=true", args);
        Assert.Contains("--remove_extra_whitespaces=false", args);
        Assert.Contains("--allow_whitespace_only_pieces=true", args);
        Assert.Contains("--normalization_rule_name=identity", args);
        Assert.Contains("--model_type=bpe", args);
        Assert.Contains("--vocab_size=1000", args);
    }

    [Theory]
    [InlineData(260)]
    [InlineData(0)]
    public void VocabSizeOutOfRangeIsRefusedNamingTheField(int size) =>
        Assert.Equal("VocabSize", Assert.Throws<ArgumentException>(() => new SentencePieceTrainerOptions { VocabSize = size }).ParamName);
}
