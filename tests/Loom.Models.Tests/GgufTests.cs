using System.Globalization;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;
using Loom.Data;
using Loom.Models.Interop;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Loom decoders as llama.cpp GGUF files: round trips, and llama.cpp (through LLamaSharp) computing the same logits.</summary>
public sealed class GgufTests(ITestOutputHelper output)
{
    /// <summary>A Llama-shaped tiny decoder over the byte vocabulary.</summary>
    private static DecoderLmOptions Llama(int kvHeads, bool tied) => TinyModels.Decoder(kvHeads, parallel: false) with
    {
        VocabSize = 258, SharedEmbeddings = tied, ScaleSharedLogits = false,
    };

    /// <summary>A fixed prompt of 12 byte tokens.</summary>
    private static readonly int[] Prompt = new ByteVocabulary().Encode("GGUF, Loom! ");

    private const int Continuation = 10;

    [Theory]
    [InlineData(1, false)] // multi-query
    [InlineData(2, false)] // grouped
    [InlineData(4, false)] // multi-head
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(4, true)]  // tied embeddings
    public void ALoomLlamaRoundTripsThroughGgufExactly(int kvHeads, bool tied)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(kvHeads, tied), 1);
        GgufLlama.Export(model, path, name: "tiny");
        using var back = GgufLlama.Import(path);

        Assert.Equal(model.Options, back.Options);
        var original = model.state_dict();
        foreach (var (name, tensor) in back.state_dict())
            Assert.True(original[name].equal(tensor).all().item<bool>(), name);

        var file = GgufFile.Read(path);
        Assert.Equal(tied, !file.Tensors.ContainsKey("output.weight"));
        Assert.Equal([258L, 32L], file.Tensors["token_embd.weight"].shape);
        Assert.Equal([kvHeads * 8L, 32L], file.Tensors["blk.1.attn_k.weight"].shape);
        Assert.True(file.Types.Values.All(t => t == GgmlType.F32));
        Assert.Equal("llama", file.Metadata["general.architecture"]);
        Assert.Equal("tiny", file.Metadata["general.name"]);
        Assert.Equal((uint)kvHeads, file.Metadata["llama.attention.head_count_kv"]);
        Assert.Equal(32u, file.Metadata[GgufFile.AlignmentKey]);
        var tokens = (string[])file.Metadata["tokenizer.ggml.tokens"];
        Assert.Equal(["<0x00>", "<0x0A>", "<0xFF>", "</s>", "<pad>"], [tokens[0], tokens[10], tokens[255], tokens[256], tokens[257]]);
        // Row 1 of head 0's permuted query kernel is its row D/2 = 4: adjacent pairs, as llama.cpp rotates them.
        Assert.True(file.Tensors["blk.0.attn_q.weight"][1].equal(original["blocks.0.attn.wq.weight"][4]).all().item<bool>());
        foreach (var t in file.Tensors.Values) t.Dispose();
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(4, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(4, true)]
    public void LlamaCppComputesTheSameLogitsAndGreedyTokensAsLoom(int kvHeads, bool tied)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(kvHeads, tied), 7);
        model.eval();
        GgufLlama.Export(model, path);

        // Loom: logits for every prompt position, then greedy tokens by re-reading the whole sequence.
        float[,] loomLogits;
        var loomTokens = new List<int>();
        using (no_grad())
        {
            var logits = model.forward(tensor(Prompt.Select(t => (long)t).ToArray()).unsqueeze(0))[0]; // (T, V)
            loomLogits = new float[Prompt.Length, 258];
            var data = logits.contiguous().data<float>().ToArray();
            for (int t = 0; t < Prompt.Length; t++)
                for (int v = 0; v < 258; v++) loomLogits[t, v] = data[t * 258 + v];
            var sequence = Prompt.Select(t => (long)t).ToList();
            for (int i = 0; i < Continuation; i++)
            {
                using var step = NewDisposeScope();
                int next = (int)model.forward(tensor(sequence.ToArray()).unsqueeze(0))[0, -1].argmax().item<long>();
                loomTokens.Add(next);
                sequence.Add(next);
            }
        }

        // llama.cpp: the prompt in one batch with logits at every position, then one token at a time.
        var (llamaLogits, llamaTokens, warnings) = LlamaCpp.Run(path, Prompt, Continuation);
        foreach (var line in warnings) output.WriteLine($"llama.cpp: {line}");
        double max = 0;
        for (int t = 0; t < Prompt.Length; t++)
            for (int v = 0; v < 258; v++) max = Math.Max(max, Math.Abs(loomLogits[t, v] - llamaLogits[t, v]));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"kv heads {kvHeads}, tied {tied}: max |logit difference| over {Prompt.Length} positions = {max:E2}"));
        output.WriteLine($"Loom greedy: {string.Join(' ', loomTokens)}; llama.cpp greedy: {string.Join(' ', llamaTokens)}");
        Assert.True(max < 1e-3, $"max logit difference {max}");
        Assert.Equal(loomTokens, llamaTokens);
    }

    [Fact]
    public void AnF16ExportRoundsTheKernelsToHalfPrecisionAndKeepsTheNormsExact()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(2, tied: false), 1);
        GgufLlama.Export(model, path, type: GgmlType.F16);
        using var back = GgufLlama.Import(path);
        var original = model.state_dict();
        foreach (var (name, tensor) in back.state_dict())
        {
            var expected = original[name].dim() == 1 ? original[name] : original[name].to(float16).to(float32);
            Assert.True(expected.equal(tensor).all().item<bool>(), name);
        }
        var file = GgufFile.Read(path);
        Assert.Equal(GgmlType.F16, file.Types["blk.0.attn_q.weight"]);
        Assert.Equal(GgmlType.F32, file.Types["blk.0.attn_norm.weight"]);
        foreach (var t in file.Tensors.Values) t.Dispose();
    }

    [Fact]
    public void AQ8ExportStoresBlocksThatDequantizeAsGgmlsReferenceDoes()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(2, tied: false), 1);
        GgufLlama.Export(model, path, type: GgmlType.Q8_0);
        var file = GgufFile.Read(path);
        Assert.Equal(GgmlType.Q8_0, file.Types["blk.0.ffn_down.weight"]);
        Assert.Equal(GgmlType.F32, file.Types["blk.0.attn_norm.weight"]);
        Assert.Equal(7u, file.Metadata["general.file_type"]); // LLAMA_FTYPE_MOSTLY_Q8_0

        // ggml's quantize_row_q8_0_ref, one value at a time: d = amax / 127 stored as f16, q = round(x · (1/d)) half away from zero.
        var kernel = model.state_dict()["blocks.0.mlp.down.weight"].contiguous().data<float>().ToArray();
        var expected = new float[kernel.Length];
        for (int block = 0; block < kernel.Length / 32; block++)
        {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = Math.Max(amax, Math.Abs(kernel[block * 32 + i]));
            float d = amax / 127, id = d != 0 ? 1 / d : 0, stored = (float)(Half)d;
            for (int i = 0; i < 32; i++) expected[block * 32 + i] = stored * MathF.Round(kernel[block * 32 + i] * id, MidpointRounding.AwayFromZero);
        }
        Assert.Equal(expected, file.Tensors["blk.0.ffn_down.weight"].contiguous().data<float>().ToArray());
        foreach (var t in file.Tensors.Values) t.Dispose();
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(4, true)]
    public void LlamaCppOnAQ8ExportComputesLoomsLogitsForTheSameBlocks(int kvHeads, bool tied)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using (var model = Seeded.Model(Llama(kvHeads, tied), 7)) GgufLlama.Export(model, path, type: GgmlType.Q8_0);
        using var dequantized = GgufLlama.Import(path); // Loom with exactly the values the blocks stand for
        dequantized.eval();
        Tensor logits;
        using (no_grad()) logits = dequantized.forward(tensor(Prompt.Select(t => (long)t).ToArray()).unsqueeze(0))[0];
        var (llamaLogits, _, _) = LlamaCpp.Run(path, Prompt, 1);
        var llama = tensor(Enumerable.Range(0, Prompt.Length).SelectMany(t => Enumerable.Range(0, 258).Select(v => llamaLogits[t, v])).ToArray()).reshape(Prompt.Length, 258);
        // llama.cpp also rounds the activations to 8-bit blocks before each q8_0 matmul, so agreement is to about 1%.
        double max = (logits - llama).abs().max().item<float>(), scale = logits.abs().max().item<float>();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"kv heads {kvHeads}, tied {tied}: max |logit difference| {max:E2} of max |logit| {scale:F2}"));
        Assert.True(max < 0.02 * scale, $"max logit difference {max} against logits up to {scale}");
        Assert.Equal(logits.argmax(-1).data<long>().ToArray(), llama.argmax(-1).data<long>().ToArray());
    }

    [Fact]
    public void LlamaCppTokenizesTextIntoTheByteVocabularysIds()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(2, tied: true), 1);
        GgufLlama.Export(model, path);
        const string text = "GGUF, Loom!\n  é\t€ end";
        var (ids, eos) = LlamaCpp.Tokenize(path, text);
        Assert.Equal(new ByteVocabulary().Encode(text), ids);
        Assert.Equal(ByteVocabulary.Eos, eos);
    }

    /// <summary>
    /// A model over a SentencePiece BPE vocabulary (trained here with Debian's spm_train) exports with its pieces, scores
    /// and kinds as llama.cpp's "llama" tokenizer: llama.cpp then tokenizes text into Loom's ids and computes its logits.
    /// </summary>
    [SkippableFact]
    public void ASentencePieceVocabularyTravelsIntoGgufAndLlamaCppTokenizesAsLoomDoes()
    {
        Requires.That(Requires.OnPath("spm_train"), "spm_train is not on PATH: apt-get install sentencepiece");
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        var corpus = new StringBuilder();
        var rng = new Random(5);
        string[] words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "loom", "weaves", "threads", "into", "cloth", "and", "patterns"];
        for (int line = 0; line < 3000; line++)
            corpus.AppendJoin(' ', Enumerable.Range(0, 9).Select(_ => words[rng.Next(words.Length)])).Append(' ').Append(rng.Next(1000)).Append('\n');
        File.WriteAllText(temp.File("corpus.txt"), corpus.ToString());
        string spm = SentencePieceTrainer.Train(temp.File("corpus.txt"), temp.File("bpe.model"),
            new SentencePieceTrainerOptions { VocabSize = 300, ModelType = SentencePieceModelType.Bpe, Threads = 1 });
        var vocabulary = new SentencePieceVocabulary(spm);

        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(2, tied: false) with { VocabSize = vocabulary.Size }, 3);
        model.eval();
        GgufLlama.Export(model, path, vocabulary: vocabulary);

        const string text = "the lazy fox weaves cloth";
        int[] loomIds = vocabulary.Encode(text);
        var (llamaIds, eos) = LlamaCpp.Tokenize(path, text);
        output.WriteLine($"{text}: {string.Join(' ', loomIds)}");
        Assert.Equal(loomIds, llamaIds);
        Assert.Equal(vocabulary.EosId, eos);

        float[] loomLogits;
        using (no_grad()) loomLogits = model.forward(tensor(loomIds.Select(t => (long)t).ToArray()).unsqueeze(0))[0].contiguous().data<float>().ToArray();
        var (llamaLogits, _, _) = LlamaCpp.Run(path, loomIds, 1);
        double max = 0;
        for (int t = 0; t < loomIds.Length; t++)
            for (int v = 0; v < vocabulary.Size; v++) max = Math.Max(max, Math.Abs(loomLogits[t * vocabulary.Size + v] - llamaLogits[t, v]));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{vocabulary.Size} SentencePiece ids: max |logit difference| {max:E2}"));
        Assert.True(max < 1e-3, $"max logit difference {max}");
    }

    [Fact]
    public void VocabulariesWithoutAGgufFormAreRefusedByName()
    {
        using var temp = new TempDirectory("loom-gguf-");
        using var model = Seeded.Model(Llama(2, tied: false) with { VocabSize = 50257 + 1 }, 1);
        var e = Assert.Throws<ArgumentException>(() => GgufLlama.Export(model, temp.File("m.gguf"), vocabulary: Vocabularies.Create("tiktoken:gpt2")));
        Assert.Contains("has no GGUF form Loom writes", e.Message);
        Assert.False(File.Exists(temp.File("m.gguf")));
    }

    [Fact]
    public void ConfigurationsNoLlamaRepresentsAreRefusedNamingTheOption()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var palm = Seeded.Model(Llama(2, tied: false) with { ParallelBlock = true }, 1);
        Assert.Contains("model.parallel_block = true", Assert.Throws<ArgumentException>(() => GgufLlama.Export(palm, path)).Message);
        using var scaled = Seeded.Model(Llama(2, tied: true) with { ScaleSharedLogits = true }, 1);
        Assert.Contains("model.scale_shared_logits = true", Assert.Throws<ArgumentException>(() => GgufLlama.Export(scaled, path)).Message);
        using var small = Seeded.Model(Llama(2, tied: false) with { VocabSize = 40 }, 1);
        Assert.Contains("model.vocab_size = 40", Assert.Throws<ArgumentException>(() => GgufLlama.Export(small, path)).Message);
        Assert.False(File.Exists(path)); // nothing written
    }

    [Fact]
    public void ATruncatedGgufFileIsAnInvalidDataExceptionNamingTheFile()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-gguf-");
        string path = temp.File("model.gguf");
        using var model = Seeded.Model(Llama(2, tied: false), 1);
        GgufLlama.Export(model, path);
        byte[] bytes = File.ReadAllBytes(path);
        foreach (int length in new[] { 10, 200, 4000, bytes.Length / 2, bytes.Length - 1 })
        {
            File.WriteAllBytes(path, bytes[..length]);
            var e = Assert.ThrowsAny<Exception>(() => GgufLlama.Import(path));
            Assert.True(e is InvalidDataException, $"{length} bytes: {e}");
            Assert.Contains(path, e.Message);
        }
        File.WriteAllBytes(path, Encoding.ASCII.GetBytes("not a gguf file at all, just text"));
        Assert.Contains("not a GGUF file", Assert.Throws<InvalidDataException>(() => GgufLlama.Import(path)).Message);
    }

    /// <summary>llama.cpp through LLamaSharp, on the CPU with one thread and an F32 key/value cache.</summary>
    private static class LlamaCpp
    {
        private static readonly StringBuilder Log = new();
        private static readonly List<string> Warnings = [];
        private static readonly Lock Gate = new(); // one model at a time, so that the log is that model's

        static LlamaCpp() => NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            lock (Log)
            {
                Log.Append(CultureInfo.InvariantCulture, $"[{level}] {message}");
                if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error) Warnings.Add($"[{level}] {message.TrimEnd()}");
            }
        });

        /// <summary>
        /// Logits at every position of <paramref name="prompt"/>, then <paramref name="count"/> greedy tokens, and the
        /// warnings and errors llama.cpp logged meanwhile.
        /// </summary>
        public static (float[,] Logits, List<int> Tokens, List<string> Warnings) Run(string path, int[] prompt, int count)
        {
            lock (Gate)
            {
                lock (Log)
                {
                    Log.Clear();
                    Warnings.Clear();
                }
                try
                {
                    var (logits, tokens) = RunLocked(path, prompt, count);
                    lock (Log) return (logits, tokens, [.. Warnings]);
                }
                catch (Exception e)
                {
                    lock (Log) throw new InvalidOperationException($"llama.cpp failed: {e.Message}\n{Log}", e);
                }
            }
        }

        /// <summary>llama.cpp's tokens for <paramref name="text"/> (no beginning-of-sequence token added) and its end-of-sequence id.</summary>
        public static (int[] Ids, int? Eos) Tokenize(string path, string text)
        {
            lock (Gate)
            {
                var parameters = new ModelParams(path) { VocabOnly = true, GpuLayerCount = 0 };
                using var weights = LLamaWeights.LoadFromFile(parameters);
                return ([.. weights.Tokenize(text, add_bos: true, special: false, Encoding.UTF8).Select(t => (int)t)], weights.Vocab.EOS is { } e ? (int)e : null);
            }
        }

        private static (float[,] Logits, List<int> Tokens) RunLocked(string path, int[] prompt, int count)
        {
            var parameters = new ModelParams(path)
            {
                ContextSize = 32, BatchSize = 32, UBatchSize = 32, GpuLayerCount = 0, Threads = 1, BatchThreads = 1,
                TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
            };
            using var weights = LLamaWeights.LoadFromFile(parameters);
            using var context = weights.CreateContext(parameters);
            int vocab = weights.Vocab.Count;
            var batch = new LLamaBatch();
            for (int i = 0; i < prompt.Length; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, true);
            var result = context.Decode(batch);
            if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {result}");
            var logits = new float[prompt.Length, vocab];
            for (int t = 0; t < prompt.Length; t++)
            {
                var row = context.NativeHandle.GetLogitsIth(t);
                for (int v = 0; v < vocab; v++) logits[t, v] = row[v];
            }
            var tokens = new List<int>();
            int last = prompt.Length - 1;
            for (int i = 0; i < count; i++)
            {
                var row = context.NativeHandle.GetLogitsIth(last);
                int next = 0;
                for (int v = 1; v < vocab; v++) if (row[v] > row[next]) next = v;
                tokens.Add(next);
                batch.Clear();
                last = batch.Add((LLamaToken)next, prompt.Length + i, LLamaSeqId.Zero, true);
                result = context.Decode(batch);
                if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {result}");
            }
            return (logits, tokens);
        }
    }
}
