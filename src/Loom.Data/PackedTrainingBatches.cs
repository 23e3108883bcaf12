using Loom.Data.FeatureConverters;
using Loom.Data.Tasks;
using TorchSharp;

namespace Loom.Data;

/// <summary>One component of <see cref="PackedTrainingBatches"/>: a task's tokenized examples and its rate.</summary>
/// <param name="Name">The task's name.</param>
/// <param name="Examples">Tokenized examples with "targets" and optionally "inputs" (a live pipeline's list, or a <see cref="Caching.CachedSplit"/>).</param>
/// <param name="Rate">Relative rate in the mixture, positive.</param>
public sealed record PackedComponent(string Name, IReadOnlyList<Example> Examples, double Rate = 1.0);

/// <summary>
/// Packed training batches over one task or a mixture of tasks, each batch a pure function of (seed,
/// step, rank): the trainer's data path for tasks with inputs and targets and for mixtures.
/// </summary>
/// <remarks>
/// <para>
/// Each example becomes a decoder sequence <c>inputs ++ targets</c> with loss on the targets only
/// (<see cref="PrefixLmFeatureConverter"/>; attention stays causal, as in generation). An example
/// longer than L loses inputs from the front first, then targets from the end, so a short target
/// such as a class label survives a long input. A targets-only example longer than L (a whole
/// document of a language-modelling task) is cut into pieces of L tokens, each packed on its own,
/// so no text is lost.
/// </para>
/// <para>
/// Every component has its own <see cref="PackedBatcher"/> (shuffled per epoch, sharded by rank,
/// packed next-fit). Row b of step k is this rank's sample s = k * B + b: a
/// <see cref="MixtureSampler"/> picks the component from the global sample index s * W + rank, and
/// that component's row s supplies the examples. So the batch never depends on earlier batches.
/// </para>
/// </remarks>
public sealed class PackedTrainingBatches : ITrainingBatches
{
    private readonly Component[] _components;
    private readonly MixtureSampler _sampler;
    private readonly PrefixLmFeatureConverter _converter;
    private readonly EncoderDecoderFeatureConverter _encoderDecoder;

    /// <summary>Creates the batches.</summary>
    /// <param name="components">The tasks and their rates; one component for a single task.</param>
    /// <param name="vocabulary">The vocabulary the examples were encoded with (its pad id starts and pads rows).</param>
    /// <param name="sequenceLength">L: tokens per row.</param>
    /// <param name="batchSize">B: rows per batch on this rank.</param>
    /// <param name="seed">The seed of the order and the mixing.</param>
    /// <param name="rank">This data-parallel rank.</param>
    /// <param name="worldSize">The number of data-parallel ranks.</param>
    /// <param name="layout">
    /// The model's features: decoder-only rows (inputs ++ targets), or encoder-decoder rows whose encoder
    /// and decoder each hold L tokens. Both pack the same examples per row (an example's inputs plus targets
    /// fit in L), so a seed trains either family on the same data.
    /// </param>
    /// <exception cref="ArgumentException">No components, a component without examples, or an example without "targets".</exception>
    public PackedTrainingBatches(IReadOnlyList<PackedComponent> components, IVocabulary vocabulary, int sequenceLength, int batchSize,
        ulong seed, int rank = 0, int worldSize = 1, FeatureLayout layout = FeatureLayout.Decoder)
    {
        ArgumentNullException.ThrowIfNull(components);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if (components.Count == 0) throw new ArgumentException("there are no tasks to train on", nameof(components));
        _converter = new PrefixLmFeatureConverter(PrefixLmFeatureOptions.ForVocabulary(vocabulary, sequenceLength));
        _encoderDecoder = new EncoderDecoderFeatureConverter(EncoderDecoderFeatureOptions.ForVocabulary(vocabulary, sequenceLength, sequenceLength));
        Layout = layout;
        _components = [.. components.Select((c, i) => new Component(c, sequenceLength, batchSize, Mix(seed, i), rank, worldSize))];
        _sampler = new MixtureSampler([.. components.Select(c => c.Rate)], seed);
        SequenceLength = sequenceLength;
        BatchSize = batchSize;
        Rank = rank;
        WorldSize = worldSize;
    }

    /// <inheritdoc />
    public int BatchSize { get; }

    /// <inheritdoc />
    public int SequenceLength { get; }

    /// <summary>The model features the batches hold.</summary>
    public FeatureLayout Layout { get; }

    /// <summary>This data-parallel rank.</summary>
    public int Rank { get; }

    /// <summary>The number of data-parallel ranks.</summary>
    public int WorldSize { get; }

    /// <summary>The components' names, in order.</summary>
    public IReadOnlyList<string> ComponentNames => [.. _components.Select(c => c.Name)];

    /// <summary>The component (index into <see cref="ComponentNames"/>) and the examples that fill row <paramref name="index"/> of the batch for <paramref name="step"/>.</summary>
    public (int Component, IReadOnlyList<(int[] Inputs, int[] Targets)> Examples) RowAt(long step, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if ((uint)index >= (uint)BatchSize)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"row index must be in [0, {BatchSize}), got {index}");
        long sample = checked(step * BatchSize + index);
        int c = _sampler.ComponentAt(checked(sample * WorldSize + Rank));
        return (c, _components[c].RowExamples(sample));
    }

    /// <inheritdoc />
    public FeatureBatch GetBatch(long step)
    {
        using var scope = torch.NewDisposeScope();
        if (Layout == FeatureLayout.EncoderDecoder)
            return EncoderDecoderFeatureConverter.ToTensors(Rows(step, e => _encoderDecoder.Convert(e).Rows, "encoder-decoder ")).ToFeatures().MoveToOuterDisposeScope();
        var batch = PrefixLmFeatureConverter.ToTensors(Rows(step, e => _converter.Convert(e).Rows, ""));
        batch.CausalAttention.Dispose(); // attention stays causal over inputs, as when generating
        return FeatureBatch.Decoder(batch.Tokens, batch.Targets, batch.SegmentIds, batch.Positions, batch.LossWeights).MoveToOuterDisposeScope();
    }

    /// <summary>The converted rows of <paramref name="step"/>'s batch: each row's examples, converted into exactly one row.</summary>
    private List<TRow> Rows<TRow>(long step, Func<IReadOnlyList<(int[] Inputs, int[] Targets)>, IReadOnlyList<TRow>> convert, string kind)
    {
        var rows = new List<TRow>(BatchSize);
        for (int b = 0; b < BatchSize; b++)
        {
            var (component, examples) = RowAt(step, b);
            var converted = convert(examples);
            if (converted.Count != 1)
                throw new InvalidOperationException($"{_components[component].Name}: a packed row became {converted.Count} {kind}rows; the batcher and converter disagree on lengths");
            rows.Add(converted[0]);
        }
        return rows;
    }

    /// <summary>Packing efficiency of a component over one epoch: tokens placed over row capacity, in (0, 1].</summary>
    public double PackingEfficiency(int component, long epoch = 0)
    {
        var c = _components[component];
        var rows = c.Batcher.EpochRows(epoch);
        long used = rows.Sum(r => r.Sum(u => (long)c.Units[u].Length));
        return used / (double)((long)rows.Count * SequenceLength);
    }

    /// <summary>
    /// Shortens an example to at most <paramref name="length"/> tokens: inputs lose tokens from the
    /// front first, then targets from the end. Long inputs keep <c>length - max(targets, targetsRoom)</c>
    /// tokens: with <paramref name="targetsRoom"/> at least every target's length (see <see cref="TargetsRoom"/>),
    /// where the inputs stop no longer depends on the target, so a model cannot read the answer off
    /// the position its answer starts at (with "ham" + EOS one token shorter than "spam" + EOS, every
    /// truncated email would otherwise end one position later when its label is ham).
    /// </summary>
    /// <param name="inputs">The example's inputs.</param>
    /// <param name="targets">The example's targets.</param>
    /// <param name="length">The most tokens the two may keep together.</param>
    /// <param name="targetsRoom">Positions kept for targets however short they are; 0 keeps only what each example's targets need.</param>
    public static (int[] Inputs, int[] Targets) Fit(int[] inputs, int[] targets, int length, int targetsRoom = 0)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentOutOfRangeException.ThrowIfNegative(targetsRoom);
        int keptTargets = Math.Min(targets.Length, length);
        int room = Math.Min(length, Math.Max(keptTargets, targetsRoom));
        int keptInputs = Math.Min(inputs.Length, length - room);
        return keptInputs == inputs.Length && keptTargets == targets.Length ? (inputs, targets) : (inputs[(inputs.Length - keptInputs)..], targets[..keptTargets]);
    }

    /// <summary>
    /// The room <see cref="Fit"/> keeps for targets in a task's rows: its longest target among examples that
    /// have inputs, at most half of <paramref name="length"/> (so that one long target cannot crowd out every
    /// example's inputs); 0 when no example has inputs.
    /// </summary>
    /// <param name="examples">Each example's (inputs length, targets length).</param>
    /// <param name="length">The row length.</param>
    public static int TargetsRoom(IEnumerable<(int Inputs, int Targets)> examples, int length)
    {
        ArgumentNullException.ThrowIfNull(examples);
        int longest = examples.Where(e => e.Inputs > 0).Select(e => e.Targets).DefaultIfEmpty(0).Max();
        return Math.Min(longest, length / 2);
    }

    private static ulong Mix(ulong seed, int component) => CounterRng.Key(seed, 0x636F6D70 /* "comp" */, (ulong)component);

    /// <summary>A packing unit: an example, or one piece of a long targets-only example.</summary>
    private readonly record struct Unit(int Example, int Offset, int Length);

    private sealed class Component
    {
        private readonly IReadOnlyList<Example> _examples;
        private readonly int _sequenceLength;
        private readonly int _targetsRoom; // the room Fit keeps for targets, the same for every example of the component

        public Component(PackedComponent spec, int sequenceLength, int batchSize, ulong seed, int rank, int worldSize)
        {
            ArgumentNullException.ThrowIfNull(spec);
            Name = spec.Name;
            _examples = spec.Examples;
            _sequenceLength = sequenceLength;
            _targetsRoom = TargetsRoom(_examples.Select(e => (e.Tokens.TryGetValue("inputs", out var x) ? x.Length : 0, e.Tokens.TryGetValue("targets", out var y) ? y.Length : 0)), sequenceLength);
            var units = new List<Unit>();
            for (int i = 0; i < _examples.Count; i++)
            {
                var tokens = _examples[i].Tokens;
                if (!tokens.TryGetValue("targets", out var targets))
                    throw new ArgumentException($"task '{Name}': example {i} has no \"targets\" tokens (it has: {string.Join(", ", tokens.Keys)}); tokenize the task first");
                int inputs = tokens.TryGetValue("inputs", out var x) ? x.Length : 0;
                if (inputs == 0 && targets.Length > sequenceLength)
                    for (int offset = 0; offset < targets.Length; offset += sequenceLength)
                        units.Add(new Unit(i, offset, Math.Min(sequenceLength, targets.Length - offset)));
                else if (targets.Length > 0)
                {
                    var (keptInputs, keptTargets) = Fit(tokens.TryGetValue("inputs", out var all) ? all : [], targets, sequenceLength, _targetsRoom);
                    units.Add(new Unit(i, 0, keptInputs.Length + keptTargets.Length));
                }
            }
            if (units.Count == 0) throw new ArgumentException($"task '{Name}' has no non-empty examples to train on");
            Units = [.. units];
            Batcher = new PackedBatcher([.. Units.Select(u => u.Length)], sequenceLength, batchSize, seed, rank, worldSize);
        }

        public string Name { get; }

        public Unit[] Units { get; }

        public PackedBatcher Batcher { get; }

        public IReadOnlyList<(int[] Inputs, int[] Targets)> RowExamples(long sample) =>
            [.. Batcher.Row(sample).Select(u => Read(Units[u]))];

        private (int[] Inputs, int[] Targets) Read(Unit unit)
        {
            var tokens = _examples[unit.Example].Tokens;
            int[] targets = tokens["targets"];
            int[] inputs = tokens.TryGetValue("inputs", out var x) ? x : [];
            if (inputs.Length == 0 && targets.Length > _sequenceLength) return ([], targets[unit.Offset..(unit.Offset + unit.Length)]);
            return Fit(inputs, targets, _sequenceLength, _targetsRoom);
        }
    }
}
