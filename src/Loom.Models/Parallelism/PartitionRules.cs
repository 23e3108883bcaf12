using Loom.Distributed;

namespace Loom.Models.Parallelism;

/// <summary>
/// t5x's logical-axis rules: an ordered list of (logical axis, mesh axis or null) pairs that says, for each logical
/// axis a parameter carries (<see cref="LogicalAxes"/>), whether it is split over the mesh's model axis or
/// replicated. The first rule naming an axis wins; an axis no rule names is replicated.
/// </summary>
public sealed record PartitionRules
{
    /// <summary>The mesh axis tensor parallelism splits parameters over.</summary>
    public const string ModelAxis = "model";

    /// <summary>The mesh axis data parallelism splits batches over.</summary>
    public const string DataAxis = "data";

    /// <summary>
    /// Megatron's split, as t5x's standard rules: attention heads (and key/value heads, unless multi-query) and the
    /// MLP's hidden units over the model axis; the embedding, the vocabulary and the experts replicated.
    /// </summary>
    public static PartitionRules Default { get; } = new([
        (LogicalAxes.Vocab, null), (LogicalAxes.Embed, null), (LogicalAxes.Heads, ModelAxis), (LogicalAxes.KvHeads, ModelAxis),
        (LogicalAxes.Mlp, ModelAxis), (LogicalAxes.Experts, null)]);

    /// <summary>Validates the rules.</summary>
    /// <exception cref="ArgumentException">A rule names an unknown logical axis, or a mesh axis other than "model" or null; the message names it.</exception>
    public PartitionRules(IReadOnlyList<(string Logical, string? Mesh)> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        foreach (var (logical, mesh) in rules)
        {
            if (!LogicalAxes.All.Contains(logical))
                throw new ArgumentException($"partitioning.rules names the logical axis '{logical}', which no parameter carries: use {string.Join(", ", LogicalAxes.All)}");
            if (mesh == DataAxis)
                throw new ArgumentException($"partitioning.rules maps '{logical}' to the data axis: parameters are sharded over the data axis by ZeRO (set training.zero_stage = 3 instead), map it to \"model\" or null");
            if (mesh is not null && mesh != ModelAxis)
                throw new ArgumentException($"partitioning.rules maps '{logical}' to the mesh axis '{mesh}': the mesh's axes are \"data\" and \"model\" (or null: replicated)");
        }
        Rules = rules;
    }

    /// <summary>The rules, in order.</summary>
    public IReadOnlyList<(string Logical, string? Mesh)> Rules { get; }

    /// <summary>Whether <paramref name="logical"/> is split over the model axis (its first rule says "model").</summary>
    public bool SplitsOverModel(string logical)
    {
        foreach (var (name, mesh) in Rules)
            if (name == logical) return mesh == ModelAxis;
        return false;
    }

    /// <summary>Parses the config form: a list of [logical, mesh-or-null] pairs.</summary>
    /// <exception cref="ArgumentException">An entry is not a pair; see also the constructor.</exception>
    public static PartitionRules Parse(IReadOnlyList<IReadOnlyList<string?>>? rules)
    {
        if (rules is null) return Default;
        return new PartitionRules([.. rules.Select((rule, i) => rule is [{ } logical, var mesh]
            ? (logical, mesh)
            : throw new ArgumentException($"partitioning.rules[{i}] must be a pair [\"logical_axis\", \"model\" or null], got [{string.Join(", ", rule ?? [])}]"))]);
    }
}

/// <summary>
/// How one rank holds the model after <see cref="LanguageModel.ShardForTensorParallel"/>: which parameters are cut
/// along which dimension, and which replicated ones receive only this rank's part of their gradient.
/// </summary>
public sealed class TensorParallelLayout
{
    /// <summary>Records the layout.</summary>
    /// <param name="group">The model group (not owned).</param>
    /// <param name="shardedDims">Parameter name → the dimension cut into <c>group.WorldSize</c> equal parts.</param>
    /// <param name="partialGradients">Replicated parameters whose gradients the model group must sum.</param>
    public TensorParallelLayout(ICommunicator group, IReadOnlyDictionary<string, int> shardedDims, IReadOnlySet<string> partialGradients)
    {
        Group = group ?? throw new ArgumentNullException(nameof(group));
        ShardedDims = shardedDims ?? throw new ArgumentNullException(nameof(shardedDims));
        PartialGradients = partialGradients ?? throw new ArgumentNullException(nameof(partialGradients));
    }

    /// <summary>A model held whole (no model axis).</summary>
    public static TensorParallelLayout Whole { get; } = new(new SingleProcessCommunicator(), new Dictionary<string, int>(), new HashSet<string>());

    /// <summary>The model group.</summary>
    public ICommunicator Group { get; }

    /// <summary>Ranks on the model axis.</summary>
    public int Parts => Group.WorldSize;

    /// <summary>This rank's part.</summary>
    public int Part => Group.Rank;

    /// <summary>Parameter name → the dimension cut into <see cref="Parts"/> equal parts, part <see cref="Part"/> held here.</summary>
    public IReadOnlyDictionary<string, int> ShardedDims { get; }

    /// <summary>
    /// Replicated parameters inside a sharded sublayer (multi-query keys and values under sharded heads): each rank's
    /// gradient covers only its own heads, and the model group sums them after the backward pass.
    /// </summary>
    public IReadOnlySet<string> PartialGradients { get; }

    /// <summary>The dimension of <paramref name="parameter"/> that is cut, or null when it is replicated.</summary>
    public int? ShardedDim(string parameter) => ShardedDims.TryGetValue(parameter, out int dim) ? dim : null;
}
