namespace Loom.Planning;

/// <summary>
/// The shape of a dense decoder-only Transformer, all the cost model needs to know about a model
/// (Pope et al. 2022, section 2: L layers, E = d_model, F = d_ff, heads of d_head, multi-query when
/// <see cref="KvHeads"/> is 1).
/// </summary>
public sealed record ModelShape
{
    /// <summary>A name for tables and plots.</summary>
    public string Name { get; }

    /// <summary>Number of Transformer blocks.</summary>
    public int Layers { get; }

    /// <summary>E: the residual stream's width.</summary>
    public int ModelDim { get; }

    /// <summary>Number of query heads.</summary>
    public int Heads { get; }

    /// <summary>Number of key/value heads: 1 is multi-query attention, <see cref="Heads"/> is multi-head.</summary>
    public int KvHeads { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>F: the feed-forward hidden width (of each of the two input matrices when <see cref="GatedMlp"/>).</summary>
    public int FfDim { get; }

    /// <summary>Vocabulary size (rows of the embedding and of the output projection).</summary>
    public int Vocab { get; }

    /// <summary>PaLM's parallel block, y = x + Attn(LN(x)) + MLP(LN(x)): one set of collectives per layer instead of two.</summary>
    public bool ParallelBlock { get; }

    /// <summary>A gated MLP (SwiGLU, GeGLU): three E×F matrices instead of two.</summary>
    public bool GatedMlp { get; }

    /// <summary>The output projection reuses the input embedding (one V×E table stored instead of two).</summary>
    public bool SharedEmbeddings { get; }

    /// <summary>Creates and validates a shape.</summary>
    /// <exception cref="ArgumentException">A size is not positive, or there are more key/value heads than heads or they do not divide them.</exception>
    public ModelShape(string name, int layers, int modelDim, int heads, int kvHeads, int headDim, int ffDim, int vocab,
        bool parallelBlock, bool gatedMlp, bool sharedEmbeddings = true)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Positive(layers, "layers"); Positive(modelDim, "d_model"); Positive(heads, "heads"); Positive(kvHeads, "kv heads");
        Positive(headDim, "head dim"); Positive(ffDim, "d_ff"); Positive(vocab, "vocab");
        if (kvHeads > heads || heads % kvHeads != 0)
            throw new ArgumentException($"model {name}: {kvHeads} kv heads must divide the {heads} query heads");
        (Name, Layers, ModelDim, Heads, KvHeads, HeadDim, FfDim, Vocab) = (name, layers, modelDim, heads, kvHeads, headDim, ffDim, vocab);
        (ParallelBlock, GatedMlp, SharedEmbeddings) = (parallelBlock, gatedMlp, sharedEmbeddings);
    }

    private static void Positive(long value, string what)
    {
        if (value <= 0) throw new ArgumentException($"model {what} = {value} must be a positive integer");
    }

    /// <summary>Width of all query heads together (heads × d_head).</summary>
    public long QueryDim => (long)Heads * HeadDim;

    /// <summary>Width of the keys (or of the values) of all key/value heads together.</summary>
    public long KvDim => (long)KvHeads * HeadDim;

    /// <summary>Parameters of one attention layer: W_q (E×HD), W_k and W_v (E×KD each), W_o (HD×E).</summary>
    public long AttentionParameters => (long)ModelDim * (2 * QueryDim + 2 * KvDim);

    /// <summary>Parameters of one MLP: (2 or 3) × E × F.</summary>
    public long MlpParameters => (GatedMlp ? 3L : 2L) * ModelDim * FfDim;

    /// <summary>Matmul parameters of one block (norm scales are negligible and left out).</summary>
    public long LayerParameters => AttentionParameters + MlpParameters;

    /// <summary>Parameters every token is multiplied by: all blocks plus the V×E output projection (the input embedding is a lookup, not a matmul).</summary>
    public long MatmulParameters => Layers * LayerParameters + (long)Vocab * ModelDim;

    /// <summary>Parameters stored: the blocks, the output projection and, unless shared, the input embedding.</summary>
    public long StoredParameters => MatmulParameters + (SharedEmbeddings ? 0 : (long)Vocab * ModelDim);

    /// <summary>
    /// FLOPs of the forward pass of one token at position <paramref name="keys"/> (attending to that many
    /// keys): 2 per matmul parameter plus 4 · layers · heads · d_head · keys for QKᵀ and AV.
    /// </summary>
    public double FlopsPerToken(long keys) => 2.0 * MatmulParameters + AttentionFlopsPerKey * keys;

    /// <summary>Attention FLOPs per token per attended key: QKᵀ and AV are 2 · d_head each, per head, per layer.</summary>
    public double AttentionFlopsPerKey => 4.0 * Layers * Heads * HeadDim;

    /// <summary>Key and value elements cached per token (both, all layers): 2 · layers · kv heads · d_head.</summary>
    public long KvElementsPerToken => 2L * Layers * KvHeads * HeadDim;

    /// <summary>PaLM 540B (Chowdhery et al. 2022, Table 1; the model of Pope et al.): 118 layers, E 18432, 48 heads of 256, multi-query, F 73728, SwiGLU, parallel block.</summary>
    public static ModelShape Palm540B { get; } = new("palm-540b", 118, 18432, 48, 1, 256, 73728, 256000, parallelBlock: true, gatedMlp: true);

    /// <summary>PaLM 62B: 64 layers, E 8192, 32 heads of 256, multi-query, F 32768.</summary>
    public static ModelShape Palm62B { get; } = new("palm-62b", 64, 8192, 32, 1, 256, 32768, 256000, parallelBlock: true, gatedMlp: true);

    /// <summary>PaLM 8B: 32 layers, E 4096, 16 heads of 256, multi-query, F 16384.</summary>
    public static ModelShape Palm8B { get; } = new("palm-8b", 32, 4096, 16, 1, 256, 16384, 256000, parallelBlock: true, gatedMlp: true);

    /// <summary>LLaMA 3 70B (the running example of "How to Scale Your Model"): 80 serial layers, E 8192, 64 heads of 128 with 8 kv heads, F 28672, SwiGLU, untied embeddings.</summary>
    public static ModelShape Llama3_70B { get; } = new("llama3-70b", 80, 8192, 64, 8, 128, 28672, 128256, parallelBlock: false, gatedMlp: true, sharedEmbeddings: false);

    /// <summary>The built-in shapes by name.</summary>
    public static IReadOnlyDictionary<string, ModelShape> BuiltIn { get; } = new Dictionary<string, ModelShape>(StringComparer.OrdinalIgnoreCase)
    {
        [Palm540B.Name] = Palm540B, [Palm62B.Name] = Palm62B, [Palm8B.Name] = Palm8B, [Llama3_70B.Name] = Llama3_70B,
    };
}
