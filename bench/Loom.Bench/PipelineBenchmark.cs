using System.Diagnostics;
using System.Globalization;
using System.Text;
using Loom.Core;
using Loom.Data;
using Loom.Data.Caching;
using Loom.Data.Tasks;
using Loom.Models;
using Loom.Training.Optimization;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Bench;

/// <summary>
/// The <c>pipeline</c> benchmark: how fast the trainer's data path makes batches, on the fly (the task's
/// pipeline run and tokenized in the process) and from the offline task cache, for austen (language
/// modelling: the train split's "targets" concatenated into a <see cref="TokenStream"/> and cut by
/// <see cref="LmBatcher"/>, as <c>TrainingDataLoader</c> does) and spam_assassin (inputs and targets:
/// <see cref="PackedTrainingBatches"/>), against how fast the tiny preset trains on batches of the same
/// shape in the same process. The pipeline must not be the bottleneck: every pipeline rate should be at
/// least <see cref="RequiredRatio"/> times the training rate.
/// </summary>
internal static class PipelineBenchmark
{
    public const double RequiredRatio = 10;

    private const string Split = "train";
    private const string Austen = "austen";
    private const string SpamAssassin = "spam_assassin";

    // The demo's training settings (configs/runs/demo.json): what "the tiny model's training" means.
    private const string ModelPreset = "tiny";
    private const double ClipNorm = 1.0;
    private const double ZLoss = 1e-4;
    private const double LearningRate = 0.03;

    /// <summary>One pipeline measurement: preparation, then batch production.</summary>
    private sealed record PipelineRow(string Task, string Source, string Preparation, long SplitTokens, double PrepSeconds,
        long TokensPerBatch, long Batches, double BatchSeconds, long EpochBatches, double EpochBatchSeconds)
    {
        public double BatchTokensPerSecond => Batches * TokensPerBatch / BatchSeconds;

        /// <summary>One epoch's batches' tokens over the time to prepare and then make them.</summary>
        public double EpochTokensPerSecond => EpochBatches * TokensPerBatch / (PrepSeconds + EpochBatchSeconds);
    }

    private sealed record TrainingRow(long Parameters, int VocabSize, double MedianMs, double MinMs, float FirstLoss, float LastLoss);

    public static string Run(PipelineSettings s)
    {
        if (s.Threads is int threads) torch.set_num_threads(threads);
        double? loadBefore = MachineInfo.LoadAverage();
        var vocabulary = Vocabularies.Create(s.Vocabulary);
        ulong seed = unchecked((ulong)s.Seed);
        string cacheRoot = s.CacheDir is { } dir ? Path.GetFullPath(dir) : Path.Combine(Path.GetTempPath(), $"loom-bench-pipeline-{Guid.NewGuid():N}");
        var progress = new StderrProgress();

        // Untimed: fetches the corpora if they are not cached yet, and JIT-compiles the pipeline's code,
        // so the timed runs below measure the steady state (corpus files read from ~/.cache/loom).
        foreach (string name in new[] { Austen, SpamAssassin })
        {
            Console.Error.WriteLine($"pipeline: warm-up pass over {name}/{Split} ({vocabulary.Name} vocabulary)");
            _ = NewTask(name, vocabulary, progress).GetDataset(Split).Count();
        }

        var rows = new List<PipelineRow>();
        var cacheBuildSeconds = new Dictionary<string, double>();
        var cachedMatches = new Dictionary<string, bool>();
        LmBatcher? austenBatcher = null;
        var spamEpoch = (Batches: 0L, Rows: 0L, TrainedTokens: 0L);
        try
        {
            // austen on the fly: what TrainingDataLoader does for data.task = austen.
            var clock = Stopwatch.StartNew();
            var austenTask = NewTask(Austen, vocabulary, progress);
            var austenStream = Concatenate(austenTask.GetDataset(Split).Select(e => e.Tokens["targets"]).ToList());
            austenBatcher = new LmBatcher(austenStream, s.Seq, s.Batch, seed);
            double prep = clock.Elapsed.TotalSeconds;
            rows.Add(Produce(s, Austen, "on the fly", "read corpus + pipeline (tokenize) + concatenate + LmBatcher", austenStream.Length, prep, austenBatcher, LmEpochBatches(austenBatcher)));

            cacheBuildSeconds[Austen] = BuildCache(Austen, vocabulary, cacheRoot);
            clock.Restart();
            using (var cached = CachedSplit.Open(NewTask(Austen, vocabulary, progress), Split, cacheRoot))
            {
                var cachedStream = Concatenate([.. Enumerable.Range(0, cached.Count).Select(i => cached.ReadTokens(i, "targets"))]);
                var cachedBatcher = new LmBatcher(cachedStream, s.Seq, s.Batch, seed);
                prep = clock.Elapsed.TotalSeconds;
                rows.Add(Produce(s, Austen, "cached", "CachedSplit.Open + read + concatenate + LmBatcher", cachedStream.Length, prep, cachedBatcher, LmEpochBatches(cachedBatcher)));
                cachedMatches[Austen] = cachedStream.Tokens.Span.SequenceEqual(austenStream.Tokens.Span);
            }

            // spam_assassin on the fly: the live pipeline materialised, then packed.
            clock.Restart();
            var spamExamples = NewTask(SpamAssassin, vocabulary, progress).GetDataset(Split).ToList();
            var spamBatches = new PackedTrainingBatches([new PackedComponent(SpamAssassin, spamExamples)], vocabulary, s.Seq, s.Batch, seed);
            prep = clock.Elapsed.TotalSeconds;
            spamEpoch = PackedEpoch(spamBatches, spamExamples, s);
            rows.Add(Produce(s, SpamAssassin, "on the fly", "read corpus + pipeline (tokenize) + PackedTrainingBatches", ExampleTokens(spamExamples), prep, spamBatches, spamEpoch.Batches));

            cacheBuildSeconds[SpamAssassin] = BuildCache(SpamAssassin, vocabulary, cacheRoot);
            clock.Restart();
            using (var cached = CachedSplit.Open(NewTask(SpamAssassin, vocabulary, progress), Split, cacheRoot))
            {
                var cachedBatches = new PackedTrainingBatches([new PackedComponent(SpamAssassin, cached)], vocabulary, s.Seq, s.Batch, seed);
                prep = clock.Elapsed.TotalSeconds;
                rows.Add(Produce(s, SpamAssassin, "cached", "CachedSplit.Open + PackedTrainingBatches", ExampleTokens(cached), prep, cachedBatches, PackedEpoch(cachedBatches, cached, s).Batches));
                cachedMatches[SpamAssassin] = SameBatches(spamBatches, cachedBatches, steps: 4);
            }
        }
        finally
        {
            if (s.CacheDir is null && Directory.Exists(cacheRoot)) Directory.Delete(cacheRoot, recursive: true);
        }

        var training = Train(s, vocabulary, austenBatcher);
        double? loadAfter = MachineInfo.LoadAverage();
        return Report(s, vocabulary, rows, cacheBuildSeconds, cachedMatches, spamEpoch, training, (loadBefore, loadAfter));
    }

    private static DataTask NewTask(string name, IVocabulary vocabulary, IProgress<string> progress) =>
        // A fresh registry each time: its corpus is loaded lazily once per registry, so every timed
        // preparation reads the corpus from disk as a new training run would.
        TaskRegistry.WithBuiltIns(vocabulary, progress: progress).GetTask(name);

    private static double BuildCache(string name, IVocabulary vocabulary, string cacheRoot)
    {
        Console.Error.WriteLine($"pipeline: building the cache of {name}/{Split} in {cacheRoot}");
        var progress = new StderrProgress();
        var clock = Stopwatch.StartNew();
        TaskCache.Build(NewTask(name, vocabulary, progress), new TaskCacheBuildOptions { Root = cacheRoot, Splits = [Split], Force = true }, progress);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Batches that cover an LmBatcher's epoch: its rows over B, rounded up.</summary>
    private static long LmEpochBatches(LmBatcher batcher) => (batcher.RowCount + (long)batcher.BatchSize - 1) / batcher.BatchSize;

    /// <summary>
    /// The packed epoch of a single-task <see cref="PackedTrainingBatches"/>: the tokens it trains on
    /// (each example cut to L as <see cref="PackedTrainingBatches.Fit"/> cuts it; a long targets-only
    /// example is cut into pieces, all kept), its rows (those tokens over the packing efficiency · L)
    /// and the batches that cover them.
    /// </summary>
    private static (long Batches, long Rows, long TrainedTokens) PackedEpoch(PackedTrainingBatches batches, IEnumerable<Example> examples, PipelineSettings s)
    {
        long trained = examples.Sum(e =>
        {
            int inputs = e.Tokens.TryGetValue("inputs", out var x) ? x.Length : 0;
            int targets = e.Tokens["targets"].Length;
            return targets == 0 ? 0L : inputs == 0 ? targets : Math.Min(s.Seq, inputs + targets);
        });
        long rows = (long)Math.Round(trained / (batches.PackingEfficiency(0) * s.Seq));
        return ((rows + s.Batch - 1) / s.Batch, rows, trained);
    }

    /// <summary>
    /// Makes batches 0, 1, 2, ... until there are at least --steps of them, at least --seconds have
    /// passed and one epoch's worth is made; each batch's tensors are freed before the next, as the
    /// trainer's step scope frees them.
    /// </summary>
    private static PipelineRow Produce(PipelineSettings s, string task, string source, string preparation, long splitTokens, double prepSeconds,
        ITrainingBatches batches, long epochBatches)
    {
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"pipeline: {task} {source}: prepared in {prepSeconds:F2} s ({splitTokens:N0} tokens); making batches (an epoch is {epochBatches:N0})"));
        var clock = Stopwatch.StartNew();
        double epochSeconds = 0;
        long made = 0;
        while (made < s.Steps || made < epochBatches || clock.Elapsed.TotalSeconds < s.Seconds)
        {
            using (var scope = NewDisposeScope())
            {
                var batch = batches.GetBatch(made);
                if (batch.Inputs.shape[0] != s.Batch || batch.Inputs.shape[1] != s.Seq)
                    throw new InvalidOperationException($"{task}: batch {made} has shape ({string.Join(", ", batch.Inputs.shape)}), expected ({s.Batch}, {s.Seq})");
            }
            made++;
            if (made == epochBatches) epochSeconds = clock.Elapsed.TotalSeconds;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  {made:N0} batches in {seconds:F2} s: {made * s.TokensPerBatch / seconds:N0} tokens/s"));
        return new PipelineRow(task, source, preparation, splitTokens, prepSeconds, s.TokensPerBatch, made, seconds, epochBatches, epochSeconds);
    }

    /// <summary>The tiny preset's training steps (forward + loss, backward, clip, Adafactor) on austen batches, as the demo trains.</summary>
    private static TrainingRow Train(PipelineSettings s, IVocabulary vocabulary, LmBatcher? batcher)
    {
        ArgumentNullException.ThrowIfNull(batcher);
        var preset = (DecoderLmOptions)ModelPresets.Load(ModelPreset);
        // The trainer requires model.vocab_size >= the vocabulary's size; a larger vocabulary makes training slower.
        var options = preset with
        {
            VocabSize = Math.Max(preset.VocabSize, vocabulary.Size),
            MaxSequenceLength = Math.Max(preset.MaxSequenceLength, s.Seq),
        };
        var device = Devices.Resolve(s.Device);
        using var model = new DecoderLm(options, device, new Generator(unchecked((ulong)s.Seed)));
        model.train();
        var parameters = model.parameters().ToList();
        using var optimizer = new Adafactor(model.named_parameters(), AdafactorOptions.PaLM);
        Console.Error.WriteLine($"pipeline: training the {ModelPreset} preset ({model.ParameterCount:N0} parameters, vocab {options.VocabSize}): 1 warm-up + {s.TrainSteps} timed steps");
        var times = new List<double>();
        var losses = new List<float>();
        for (int step = 0; step <= s.TrainSteps; step++)
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            optimizer.ZeroGrad();
            // The batch is made inside the step as the trainer does; it is a small part of the step
            // (the rows above measure it), but leaving it out would flatter the ratios.
            var (inputs, targets) = batcher.GetBatch(step);
            var loss = model.Loss(inputs.to(device), targets.to(device), ZLoss);
            loss.Total.backward();
            GradientClipping.ClipGlobalNormOfParameters(parameters, ClipNorm);
            optimizer.Step(LearningRate);
            float value = loss.CrossEntropy.item<float>();
            double ms = clock.Elapsed.TotalMilliseconds;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {(step == 0 ? "warm-up" : $"step {step}")}: {ms:F1} ms (loss {value:F4})"));
            losses.Add(value);
            if (step > 0) times.Add(ms);
        }
        return new TrainingRow(model.ParameterCount, options.VocabSize, Median(times), times.Min(), losses[0], losses[^1]);
    }

    private static string Report(PipelineSettings s, IVocabulary vocabulary, List<PipelineRow> rows, Dictionary<string, double> cacheBuildSeconds,
        Dictionary<string, bool> cachedMatches, (long Batches, long Rows, long TrainedTokens) spamEpoch, TrainingRow training, (double? Before, double? After) load)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        void Line(FormattableString text) => sb.Append(text.ToString(inv)).Append('\n');

        double trainingRate = s.TokensPerBatch / (training.MedianMs / 1000);
        var ratios = rows.SelectMany(r => new[] { r.BatchTokensPerSecond / trainingRate, r.EpochTokensPerSecond / trainingRate }).ToList();
        bool pass = ratios.All(r => r >= RequiredRatio);

        Line($"## pipeline: data pipeline throughput vs training ({vocabulary.Name} vocabulary)");
        Line($"");
        Line($"- date: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Line($"- commit: {MachineInfo.GitCommit()}");
        Line($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} logical CPUs, {MachineInfo.OperatingSystem()}");
        Line($"- runtime: libtorch intra-op threads {torch.get_num_threads()}; TorchSharp {MachineInfo.TorchSharpVersion()}, .NET {Environment.Version}; the pipeline itself runs on one thread");
        Line($"- load average (1 min) before / after: {Format(load.Before)} / {Format(load.After)}");
        Line($"- batches: {s.Batch} × {s.Seq} = {s.TokensPerBatch:N0} token slots (padding included, as the trainer consumes them), seed {s.Seed}; per row at least {s.Steps} batches, {s.Seconds:0.#} s and one epoch");
        var spamSplitTokens = rows.First(r => r.Task == SpamAssassin).SplitTokens;
        Line($"- split: {Split}; austen: the 5 training novels' \"targets\" (an epoch is the LmBatcher's rows); spam_assassin: \"inputs\" + \"targets\" of every example, but an epoch trains on {spamEpoch.TrainedTokens:N0} of its {spamSplitTokens:N0} tokens (inputs longer than {s.Seq} lose their front), packed into {spamEpoch.Rows:N0} rows = {spamEpoch.Batches:N0} batches");
        Line($"- cache build (TaskCache.Build, 4 shards, timed apart from the rows): austen {cacheBuildSeconds[Austen]:F2} s, spam_assassin {cacheBuildSeconds[SpamAssassin]:F2} s");
        Line($"- cached tokens equal on-the-fly tokens: austen {YesNo(cachedMatches[Austen])} (whole stream), spam_assassin {YesNo(cachedMatches[SpamAssassin])} (first 4 batches)");
        Line($"- training: {ModelPreset} preset ({training.Parameters:N0} parameters, vocab {training.VocabSize}), austen batches, forward + loss (z-loss {ZLoss}), backward, clip {ClipNorm}, Adafactor (PaLM), float32 on {s.Device}; 1 warm-up + {s.TrainSteps} timed steps, median {training.MedianMs:F1} ms (min {training.MinMs:F1}), loss {training.FirstLoss:F4} → {training.LastLoss:F4}");
        Line($"");
        Line($"| task | source | preparation | split tokens | prep s | epoch batches | batches made | batch tokens/s | ×training | epoch incl. prep, tokens/s | ×training |");
        Line($"|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            Line($"| {r.Task} | {r.Source} | {r.Preparation} | {r.SplitTokens:N0} | {r.PrepSeconds:F2} | {r.EpochBatches:N0} | {r.Batches:N0} | {r.BatchTokensPerSecond:N0} | {Ratio(r.BatchTokensPerSecond / trainingRate)} | {r.EpochTokensPerSecond:N0} | {Ratio(r.EpochTokensPerSecond / trainingRate)} |");
        Line($"| training, {ModelPreset} preset (median step) | | | | | | {s.TrainSteps} steps | {trainingRate:N0} | 1 | | |");
        Line($"");
        Line($"\"batch tokens/s\": B·T over the mean time of one GetBatch. \"epoch incl. prep\": one epoch's batches' B·T tokens over (prep + the time to make them), so the on-the-fly rows include reading the corpus and tokenizing.");
        Line($"{(pass ? "PASS" : "FAIL")}: the smallest pipeline/training ratio is {Ratio(ratios.Min())} (required: at least {RequiredRatio:0}).");
        return sb.ToString();
    }

    private static TokenStream Concatenate(IReadOnlyList<int[]> documents)
    {
        var all = new int[documents.Sum(d => d.Length)];
        int at = 0;
        foreach (var d in documents)
        {
            d.CopyTo(all, at);
            at += d.Length;
        }
        return new TokenStream(all);
    }

    private static long ExampleTokens(IEnumerable<Example> examples) =>
        examples.Sum(e => e.Tokens.Values.Sum(t => (long)t.Length));

    private static bool SameBatches(ITrainingBatches a, ITrainingBatches b, int steps)
    {
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            var x = a.GetBatch(step);
            var y = b.GetBatch(step);
            if (!Same(x.Inputs, y.Inputs) || !Same(x.Targets, y.Targets)) return false;
        }
        return true;
    }

    private static bool Same(Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.data<long>().ToArray().AsSpan().SequenceEqual(b.data<long>().ToArray());

    private static string Ratio(double ratio) => ratio.ToString(ratio >= 100 ? "N0" : "N1", CultureInfo.InvariantCulture);

    /// <summary>Writes progress lines to stderr at once (<see cref="Progress{T}"/> would post them to the thread pool during the timing).</summary>
    private sealed class StderrProgress : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine($"  {value}");
    }

    private static string YesNo(bool value) => value ? "yes" : "NO";

    private static string Format(double? value) => value is double v ? v.ToString("F2", CultureInfo.InvariantCulture) : "n/a";

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
