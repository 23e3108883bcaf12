using System.Globalization;
using Loom.Data;
using static TorchSharp.torch;

namespace Loom.Models.Interop;

/// <summary>
/// llama.cpp's Llama layout in a GGUF file (<c>general.architecture = "llama"</c>): the hyperparameters as
/// <c>llama.*</c> metadata, Loom's byte vocabulary as a <c>"llama"</c> (SentencePiece-style) tokenizer whose byte
/// tokens are <c>&lt;0x00&gt;</c>…<c>&lt;0xFF&gt;</c> (but the space, which that tokenizer spells ▁), and ggml's tensor names (<c>token_embd</c>,
/// <c>blk.N.attn_q</c>, …). A Loom decoder that is exactly a Llama (see <see cref="HuggingFaceLlama.WhyNot"/>)
/// exports to it. llama.cpp rotates adjacent pairs (x₂ᵢ, x₂ᵢ₊₁) of each head where Loom, like transformers, rotates
/// the two halves (xᵢ, xᵢ₊D/2), so the query and key kernels' rows are permuted within each head as llama.cpp's
/// <c>convert_hf_to_gguf.py</c> does (and back on import).
/// </summary>
public static class GgufLlama
{
    /// <summary>The <c>general.architecture</c> Loom writes and reads.</summary>
    public const string Architecture = "llama";

    /// <summary>
    /// Writes <paramref name="model"/> as a llama.cpp Llama GGUF file at <paramref name="path"/>, with Loom's byte
    /// vocabulary as its tokenizer (ids 0–255 the bytes, <c>&lt;/s&gt;</c> = 256 end of sequence, <c>&lt;pad&gt;</c> = 257), so
    /// that llama.cpp tokenizes text into the ids Loom does and adds no beginning-of-sequence token.
    /// </summary>
    /// <param name="model">A decoder-only model that is exactly a Llama over Loom's 258-id byte vocabulary.</param>
    /// <param name="path">The output file.</param>
    /// <param name="name">The file's <c>general.name</c>.</param>
    /// <param name="type">
    /// The kernels' element type (F32, F16 or Q8_0); norms stay F32 either way, as llama.cpp's converter keeps them.
    /// </param>
    /// <exception cref="ArgumentException">The model is not exactly a Llama (the message names the option that differs) or has another vocabulary.</exception>
    /// <param name="vocabulary">
    /// The checkpoint's vocabulary: Loom's byte vocabulary (the default) or a SentencePiece BPE model, written as
    /// llama.cpp's <c>"llama"</c> tokenizer with its pieces, scores and kinds.
    /// </param>
    public static void Export(LanguageModel model, string path, string name = "loom", GgmlType type = GgmlType.F32, IVocabulary? vocabulary = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Options is not DecoderLmOptions o)
            throw new ArgumentException($"a {model.Options.Architecture} model is not a Llama: only decoder-only (decoder_lm) models export to GGUF");
        if (HuggingFaceLlama.Instance.WhyNot(o) is { } reason) throw new ArgumentException($"this model is not exactly a llama.cpp Llama: {reason}");
        if (o.RopeScaling is not null) throw new ArgumentException("model.rope_scaling is set: Loom's GGUF export writes unscaled rotary positions only");
        var tokenizer = TokenizerMetadata(vocabulary ?? new ByteVocabulary(), o.VocabSize);
        if (o.HeadDim % 2 != 0) throw new ArgumentException($"model.head_dim = {o.HeadDim}: rotary positions need an even head width");
        if (model.TensorParallel.Parts > 1) throw new ArgumentException("this rank holds part of a tensor-parallel model: export from its checkpoint in one process");
        using var scope = NewDisposeScope();
        var state = model.state_dict();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (gguf, loom) in KeyMap(o))
        {
            var t = state[loom].detach().to(float32).cpu();
            if (gguf.EndsWith(".attn_q.weight", StringComparison.Ordinal)) t = Permute(t, o.NumHeads, o.HeadDim);
            else if (gguf.EndsWith(".attn_k.weight", StringComparison.Ordinal)) t = Permute(t, o.NumKvHeads, o.HeadDim);
            tensors.Add(new(gguf, t.contiguous()));
        }
        GgufFile.Write(path, [.. Metadata(o, name, type), .. tokenizer], tensors, (_, t) => t.dim() == 1 ? GgmlType.F32 : type);
    }

    /// <summary>Reads a GGUF Llama that Loom (or llama.cpp's converter, with F32 or F16 tensors) wrote into a Loom decoder on <paramref name="device"/>.</summary>
    /// <exception cref="InvalidDataException">
    /// The file is not a GGUF Llama Loom reads (the message names the file and what is wrong), or is truncated.
    /// </exception>
    public static DecoderLm Import(string path, Device? device = null)
    {
        var file = GgufFile.Read(path);
        try
        {
            var options = ReadOptions(path, file.Metadata, file.Tensors.ContainsKey("output.weight"));
            var model = new DecoderLm(options, device);
            using var scope = NewDisposeScope();
            var state = model.state_dict();
            var map = KeyMap(options).ToList();
            foreach (var (gguf, loom) in map)
            {
                if (!file.Tensors.TryGetValue(gguf, out var tensor))
                    throw new InvalidDataException($"{path}: missing tensor '{gguf}' (a {options.NumLayers}-layer Llama needs it)");
                var target = state[loom];
                if (!tensor.shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"{path}: tensor '{gguf}' has shape [{string.Join(", ", tensor.shape)}], its metadata implies [{string.Join(", ", target.shape)}]");
                var t = tensor.to(float32);
                if (gguf.EndsWith(".attn_q.weight", StringComparison.Ordinal)) t = Unpermute(t, options.NumHeads, options.HeadDim);
                else if (gguf.EndsWith(".attn_k.weight", StringComparison.Ordinal)) t = Unpermute(t, options.NumKvHeads, options.HeadDim);
                using (no_grad()) target.copy_(t);
            }
            var extra = file.Tensors.Keys.Except(map.Select(m => m.Gguf)).Where(k => !k.EndsWith("rope_freqs.weight", StringComparison.Ordinal)).ToList();
            if (extra.Count > 0)
                throw new InvalidDataException($"{path}: unexpected tensors {string.Join(", ", extra.Take(3))}{(extra.Count > 3 ? ", …" : "")} (not part of a {options.NumLayers}-layer Llama)");
            return model;
        }
        finally
        {
            foreach (var t in file.Tensors.Values) t.Dispose();
        }
    }

    /// <summary>ggml's tensor name → Loom's, for a Llama of <paramref name="o"/>'s shape.</summary>
    public static IEnumerable<(string Gguf, string Loom)> KeyMap(DecoderLmOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        yield return ("token_embd.weight", "embed");
        for (int i = 0; i < o.NumLayers; i++)
        {
            string g = $"blk.{i}.", loom = $"blocks.{i}.";
            yield return (g + "attn_norm.weight", loom + "norm.weight");
            yield return (g + "attn_q.weight", loom + "attn.wq.weight");
            yield return (g + "attn_k.weight", loom + "attn.wk.weight");
            yield return (g + "attn_v.weight", loom + "attn.wv.weight");
            yield return (g + "attn_output.weight", loom + "attn.wo.weight");
            yield return (g + "ffn_norm.weight", loom + "mlp_norm.weight");
            yield return (g + "ffn_gate.weight", loom + "mlp.gate.weight");
            yield return (g + "ffn_up.weight", loom + "mlp.up.weight");
            yield return (g + "ffn_down.weight", loom + "mlp.down.weight");
        }
        yield return ("output_norm.weight", "final_norm.weight");
        if (!o.SharedEmbeddings) yield return ("output.weight", "lm_head.weight"); // tied: llama.cpp reuses token_embd
    }

    /// <summary>
    /// A (heads·D, in) query or key kernel whose heads rotate halves, reordered so that each head rotates adjacent
    /// pairs: row 2i of a head is its row i, row 2i+1 its row i + D/2.
    /// </summary>
    public static Tensor Permute(Tensor kernel, int heads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return kernel.reshape(heads, 2, headDim / 2, -1).transpose(1, 2).reshape(kernel.shape);
    }

    /// <summary>The inverse of <see cref="Permute"/>.</summary>
    public static Tensor Unpermute(Tensor kernel, int heads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return kernel.reshape(heads, headDim / 2, 2, -1).transpose(1, 2).reshape(kernel.shape);
    }

    private static List<KeyValuePair<string, object>> Metadata(DecoderLmOptions o, string name, GgmlType type)
    {
        const string a = Architecture + ".";
        return
        [
            new("general.architecture", Architecture),
            new("general.name", name),
            // llama_ftype: ALL_F32, MOSTLY_F16 or MOSTLY_Q8_0 (llama.cpp reads each tensor's own type; this labels the file).
            new("general.file_type", type switch { GgmlType.F16 => 1u, GgmlType.Q8_0 => 7u, _ => 0u }),
            new(a + "vocab_size", (uint)o.VocabSize),
            new(a + "context_length", (uint)o.MaxSequenceLength),
            new(a + "embedding_length", (uint)o.ModelDim),
            new(a + "block_count", (uint)o.NumLayers),
            new(a + "feed_forward_length", (uint)o.MlpDim),
            new(a + "attention.head_count", (uint)o.NumHeads),
            new(a + "attention.head_count_kv", (uint)o.NumKvHeads),
            new(a + "attention.key_length", (uint)o.HeadDim),
            new(a + "attention.value_length", (uint)o.HeadDim),
            new(a + "rope.dimension_count", (uint)o.HeadDim),
            new(a + "rope.freq_base", (float)o.RopeBase),
            new(a + "attention.layer_norm_rms_epsilon", (float)o.NormEpsilon),
        ];
    }

    /// <summary>The <c>tokenizer.ggml.*</c> metadata for <paramref name="vocabulary"/>, padded to the model's <paramref name="vocabSize"/> ids.</summary>
    /// <exception cref="ArgumentException">The vocabulary has no GGUF form Loom writes, or more ids than the model.</exception>
    private static List<KeyValuePair<string, object>> TokenizerMetadata(IVocabulary vocabulary, int vocabSize)
    {
        if (vocabulary.Size > vocabSize)
            throw new ArgumentException($"the vocabulary {vocabulary.Name} has {vocabulary.Size} ids but model.vocab_size = {vocabSize}: export the checkpoint with its own vocabulary");
        var tokens = new string[vocabSize];
        var scores = new float[vocabSize];
        var types = new int[vocabSize];
        int bos, unknown;
        bool spacePrefix;
        switch (vocabulary)
        {
            case ByteVocabulary:
                for (int i = 0; i < 256; i++) (tokens[i], types[i]) = (string.Create(CultureInfo.InvariantCulture, $"<0x{i:X2}>"), TokenByte);
                // llama.cpp's "llama" tokenizer writes each space as ▁ (U+2581) before looking tokens up, so the space byte is
                // the normal token "▁" (which it turns back into a space), not <0x20>: text then tokenizes as Loom's bytes do.
                (tokens[' '], types[' ']) = ("\u2581", TokenNormal);
                (tokens[ByteVocabulary.Eos], types[ByteVocabulary.Eos]) = ("</s>", TokenControl);
                (tokens[ByteVocabulary.Pad], types[ByteVocabulary.Pad]) = ("<pad>", TokenControl);
                // Loom's byte vocabulary has no beginning-of-sequence token (none is added) nor unknown token (every byte
                // is a token); llama.cpp's "llama" tokenizer wants ids for both, so they name </s> and <pad>.
                (bos, unknown, spacePrefix) = (ByteVocabulary.Eos, ByteVocabulary.Pad, false);
                break;
            case SentencePieceVocabulary sentencePiece:
                var model = sentencePiece.ReadModel();
                // llama.cpp's "llama" tokenizer merges adjacent pieces by score, which is SentencePiece BPE's rule; a
                // unigram model segments by Viterbi over the scores instead, so its GGUF tokenization would differ.
                if (!model.IsBpe)
                    throw new ArgumentException($"the vocabulary {vocabulary.Name} is a SentencePiece unigram model: GGUF export writes SentencePiece BPE models (llama.cpp's llama tokenizer merges by score), and byte vocabularies");
                for (int i = 0; i < model.Pieces.Count; i++)
                    (tokens[i], scores[i], types[i]) = (model.Pieces[i].Text, model.Pieces[i].Score, (int)model.Pieces[i].Type);
                // The ids Loom adds after the last piece (EOS or PAD when the model has none).
                if (vocabulary.EosId >= model.Pieces.Count) (tokens[vocabulary.EosId], types[vocabulary.EosId]) = ("</s>", TokenControl);
                if (vocabulary.PadId >= model.Pieces.Count) (tokens[vocabulary.PadId], types[vocabulary.PadId]) = ("<pad>", TokenControl);
                (bos, unknown, spacePrefix) = (model.BosId >= 0 ? model.BosId : vocabulary.EosId, model.UnknownId >= 0 ? model.UnknownId : vocabulary.PadId, model.AddDummyPrefix);
                break;
            default:
                throw new ArgumentException($"the vocabulary {vocabulary.Name} has no GGUF form Loom writes: GGUF export writes Loom's byte vocabulary and SentencePiece BPE models");
        }
        // Ids past the vocabulary (a model sized above it) are unused tokens with names of their own.
        for (int i = vocabulary.Size; i < vocabSize; i++) (tokens[i], types[i]) = (string.Create(CultureInfo.InvariantCulture, $"<unused{i}>"), TokenUnused);
        return
        [
            new("tokenizer.ggml.model", "llama"),
            new("tokenizer.ggml.tokens", tokens),
            new("tokenizer.ggml.scores", scores),
            new("tokenizer.ggml.token_type", types),
            new("tokenizer.ggml.bos_token_id", (uint)bos),
            new("tokenizer.ggml.eos_token_id", (uint)vocabulary.EosId),
            new("tokenizer.ggml.unknown_token_id", (uint)unknown),
            new("tokenizer.ggml.padding_token_id", (uint)vocabulary.PadId),
            new("tokenizer.ggml.add_bos_token", false),
            new("tokenizer.ggml.add_eos_token", false),
            new("tokenizer.ggml.add_space_prefix", spacePrefix),
        ];
    }

    private const int TokenNormal = 1;  // LLAMA_TOKEN_TYPE_NORMAL
    private const int TokenControl = 3; // llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
    private const int TokenUnused = 5;  // LLAMA_TOKEN_TYPE_UNUSED
    private const int TokenByte = 6;    // LLAMA_TOKEN_TYPE_BYTE

    private static DecoderLmOptions ReadOptions(string path, IReadOnlyDictionary<string, object> metadata, bool untied)
    {
        string architecture = metadata.TryGetValue("general.architecture", out var arch) ? arch as string ?? "(not a string)" : "(none)";
        if (architecture != Architecture) throw new InvalidDataException($"{path}: general.architecture = {architecture} is not supported: Loom imports {Architecture}");
        const string a = Architecture + ".";
        long Int(string key) => metadata.TryGetValue(a + key, out var v) ? v switch
        {
            uint u => u, int i => i, ulong u => checked((long)u), long l => l, ushort u => u, short s => s, byte b => b, sbyte s => s,
            _ => throw new InvalidDataException($"{path}: {a}{key} is a {v.GetType().Name}, not an integer"),
        } : throw new InvalidDataException($"{path}: missing {a}{key}");
        double Number(string key, double fallback) => metadata.TryGetValue(a + key, out var v) ? v switch
        {
            float f => double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), // 1e-6 stays 1e-6
            double d => d,
            _ => throw new InvalidDataException($"{path}: {a}{key} is a {v.GetType().Name}, not a number"),
        } : fallback;
        if (metadata.ContainsKey(a + "rope.scaling.type")) throw new InvalidDataException($"{path}: {a}rope.scaling.type is set: Loom imports unscaled rotary positions");
        int heads = (int)Int("attention.head_count"), hidden = (int)Int("embedding_length");
        int headDim = metadata.ContainsKey(a + "attention.key_length") ? (int)Int("attention.key_length") : hidden / heads;
        if (metadata.ContainsKey(a + "rope.dimension_count") && Int("rope.dimension_count") != headDim)
            throw new InvalidDataException($"{path}: {a}rope.dimension_count = {Int("rope.dimension_count")} rotates part of each {headDim}-wide head; Loom rotates whole heads");
        long vocab = metadata.ContainsKey(a + "vocab_size") ? Int("vocab_size")
            : metadata.TryGetValue("tokenizer.ggml.tokens", out var tokens) && tokens is Array array ? array.Length
            : throw new InvalidDataException($"{path}: neither {a}vocab_size nor tokenizer.ggml.tokens gives the vocabulary size");
        try
        {
            return new DecoderLmOptions
            {
                VocabSize = checked((int)vocab),
                ModelDim = hidden,
                NumLayers = (int)Int("block_count"),
                NumHeads = heads,
                NumKvHeads = metadata.ContainsKey(a + "attention.head_count_kv") ? (int)Int("attention.head_count_kv") : heads,
                HeadDim = headDim,
                MlpDim = (int)Int("feed_forward_length"),
                MaxSequenceLength = (int)Int("context_length"),
                Activation = MlpActivation.SwiGlu,
                ParallelBlock = false,
                Positions = PositionEncoding.Rotary,
                RopeBase = Number("rope.freq_base", 10000),
                Norm = NormKind.RmsNorm,
                NormEpsilon = Number("attention.layer_norm_rms_epsilon", 1e-5),
                UseBias = false,
                SharedEmbeddings = !untied,
                ScaleSharedLogits = false,
            }.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }
}
