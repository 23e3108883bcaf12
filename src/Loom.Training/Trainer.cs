using System.Diagnostics;
using Loom.Distributed;
using Loom.Models;
using Loom.Models.Adapters;
using Loom.Training.Evaluation;
using Loom.Training.Metrics;
using Loom.Training.Optimization;
using Loom.Training.DataParallelism;
using Loom.Training.Recovery;
using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Training;

/// <summary>How a call to <see cref="Trainer.Run"/> ended.</summary>
/// <param name="Step">Completed updates.</param>
/// <param name="Interrupted">True when cancellation stopped the run early (a checkpoint was written).</param>
/// <param name="ValidationLoss">Held-out loss of the last evaluation (nats/token).</param>
/// <param name="Checkpoint">Folder of the last checkpoint written.</param>
/// <param name="ElapsedSeconds">Training wall time of this call.</param>
public sealed record TrainingResult(long Step, bool Interrupted, double? ValidationLoss, string? Checkpoint, double ElapsedSeconds);

/// <summary>Held-out metrics.</summary>
/// <param name="Loss">Mean cross-entropy per token, nats.</param>
/// <param name="Perplexity">exp(Loss).</param>
/// <param name="BitsPerByte">Loss in bits per UTF-8 byte of text.</param>
/// <param name="Tokens">Tokens scored.</param>
public sealed record EvaluationResult(double Loss, double Perplexity, double BitsPerByte, long Tokens);

/// <summary>
/// Owns the training loop: each update draws <see cref="TrainerOptions.GradientAccumulation"/>
/// micro-batches (a pure function of seed and index), sums their gradients, clips the global norm,
/// and steps the optimizer at the scheduled learning rate. Losses are read back from the device
/// only at logging points. Evaluates, checkpoints and logs on the configured intervals.
/// </summary>
public sealed partial class Trainer : IDisposable
{
    private readonly RunConfig config;
    private readonly TrainingData data;
    private readonly Device device;
    private readonly IOptimizer optimizer;
    private readonly ILearningRateSchedule schedule;
    private readonly IMetricSink sink;
    private readonly double flopsPerToken;
    private readonly PeakFlops? peak;
    private readonly Generator random;

    private readonly ISequenceDecoder? decoder;
    private readonly DataParallel parallel;
    private readonly ICommunicator world;
    private readonly DeviceMesh mesh;
    private readonly TensorParallelGradients tensorParallel;
    private readonly bool primary; // rank 0: the one rank that logs, plots and commits checkpoints
    private readonly ZeroSharding? sharding; // training.zero_stage > 0
    private readonly DynamicLossScaler? lossScaler; // training.precision = fp16
    private ShardingMemory? memory;

    /// <summary>Builds the model (seeded by training.seed) and optimizer on <paramref name="device"/>.</summary>
    /// <param name="config">The run's resolved config.</param>
    /// <param name="data">Its vocabulary and batches, made by the model family's feature converter.</param>
    /// <param name="runDirectory">Where checkpoints and metrics go.</param>
    /// <param name="device">Where to train.</param>
    /// <param name="decoder">
    /// Decodes predictions when tasks with metrics are evaluated (an inference engine, injected so that
    /// training does not depend on inference); null uses the plain <see cref="ReferenceDecoder"/>.
    /// </param>
    /// <param name="communicator">
    /// The data-parallel group (not owned); null trains alone. With several ranks, <paramref name="data"/> must
    /// hold this rank's shard of every global batch (<see cref="TrainingDataLoader.Load"/> with a
    /// <see cref="DataShard"/>); gradients and logged losses are averaged over the ranks, and only rank 0
    /// evaluates and writes metrics, plots and checkpoints.
    /// </param>
    /// <param name="schedule">The learning rate by step; null builds the one training.schedule names.</param>
    public Trainer(RunConfig config, TrainingData data, string runDirectory, Device device, ISequenceDecoder? decoder = null, ICommunicator? communicator = null,
        ILearningRateSchedule? schedule = null)
    {
        this.config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
        this.data = data ?? throw new ArgumentNullException(nameof(data));
        if (data.Vocabulary.Size > config.Model.VocabSize)
            throw new ArgumentException($"model.vocab_size = {config.Model.VocabSize} is smaller than the vocabulary's {data.Vocabulary.Size} ids: pass --set model.vocab_size={data.Vocabulary.Size} (or larger)");
        if (config.Model.FeatureLayout != data.Layout)
            throw new ArgumentException($"the data was made for {data.Layout} models but model.architecture = {config.Model.Architecture} needs {config.Model.FeatureLayout} batches: load the data with the model's feature layout");
        this.device = device;
        this.decoder = decoder;
        communicator ??= new SingleProcessCommunicator();
        world = communicator;
        primary = communicator.Rank == 0;
        // Rolling back needs every rank to see the same spike and reload the same checkpoint at the same step;
        // until the monitor reduces its flags across ranks, the two do not combine.
        if (communicator.WorldSize > 1 && config.Training.SpikeRecovery.Enabled)
            throw new ArgumentException($"training.spike_recovery does not yet work with data parallelism ({communicator.WorldSize} ranks): set training.spike_recovery.enabled=false, or train in one process");
        DataParallel.CheckSameConfig(communicator, RunConfigLoader.ToJson(config));
        mesh = DeviceMesh.Create(communicator, config.Parallelism.Data, config.Parallelism.Model);
        if (data.Train.BatchSize * mesh.Data != config.Training.BatchSize)
            throw new ArgumentException($"the training data has {data.Train.BatchSize} rows per batch on each of {mesh.Data} model replicas, but training.batch_size = {config.Training.BatchSize} is the global batch: load the data with this rank's DataShard (its index on the data axis)");
        RunDirectory = runDirectory;
        if (primary) Directory.CreateDirectory(runDirectory);

        // The run's own generator (not torch's global one, which other code may draw from): the
        // initial weights depend on training.seed alone, and its state is checkpointed for any
        // stochastic step a run may add (training itself draws nothing: batches come from (seed, step)).
        // It lives on the CPU whatever the device, so a seed gives the same weights on the CPU and a GPU.
        random = new Generator(unchecked((ulong)config.Training.Seed));
        Model = config.Model.Build(device, random);
        if (config.Training.InitFrom is { } initFrom) InitialisedFrom = TrainingCheckpoint.InitialiseWeights(initFrom, Model);
        if (config.Lora is { } lora)
        {
            string baseModel = InitialisedFrom ?? throw new ArgumentException("lora.* needs training.init_from: the base the adapters train over");
            if (!baseModel.StartsWith(ModelCheckpoint.HuggingFacePrefix, StringComparison.Ordinal) && ModelCheckpoint.ReadManifest(baseModel).BaseModel is not null)
                throw new ArgumentException($"training.init_from = {config.Training.InitFrom} is itself a LoRA checkpoint: merge it first (loom export merged --checkpoint {config.Training.InitFrom} --output DIR) and train adapters over DIR");
            LoraAdapters.Attach(Model, lora, baseModel, random); // freezes the base: only the adapters train
        }
        // Every rank builds (or loads) the whole model from the seed, then keeps its part: a seed gives one model however it is split.
        Model.ShardForTensorParallel(mesh.ModelGroup, config.Partitioning.Parse());
        Model.UsePrecision(ComputePrecisions.Parse(config.Training.Precision));
        if (Model.Precision == ComputePrecision.Float16)
            lossScaler = new DynamicLossScaler(config.Training.LossScale, config.Training.LossScaleGrowthInterval);
        var t = config.Training;
        var named = TrainableParameters().ToList();
        tensorParallel = new TensorParallelGradients(Model.TensorParallel, named);
        if (t.ZeroStage > 0)
        {
            sharding = new ZeroSharding(mesh.DataGroup, named, t.ZeroStage);
            var owned = sharding.Owned.ToList();
            optimizer = new ShardedOptimizer(CreateOptimizer(owned), named, owned.Select(p => p.Name));
        }
        else
        {
            optimizer = CreateOptimizer(named);
        }
        this.schedule = schedule ?? LearningRateSchedules.Create(t.Schedule, t.LearningRate, t.WarmupSteps, t.Steps, t.MinLearningRate);
        flopsPerToken = Model.FlopsPerToken(config.Data.SequenceLength);
        peak = t.PeakTflops is double tf
            ? new PeakFlops(tf * 1e12, "training.peak_tflops")
            : device.type == DeviceType.CUDA
                ? PeakFlops.Detect("cuda", Loom.Core.Devices.CudaDeviceName(Math.Max(0, (int)device.index)))
                : PeakFlops.Detect("cpu", null, get_num_threads());
        sink = primary
            ? new CompositeMetricSink(
                new JsonlMetricSink(Path.Combine(runDirectory, "metrics.jsonl"), append: true),
                new TensorBoardMetricSink(Path.Combine(runDirectory, "tensorboard")))
            : new CompositeMetricSink();
        parallel = new DataParallel(mesh.DataGroup, sharding is null ? named.Select(p => p.Param).ToList() : []); // ZeRO reduces its own way
        State = new TrainerState { Seed = t.Seed };
    }

    /// <summary>Receives progress (optional).</summary>
    public ITrainingObserver? Observer { get; set; }

    /// <summary>The checkpoint whose weights initialised the model (training.init_from); null when it was initialised from the seed.</summary>
    public string? InitialisedFrom { get; }

    /// <summary>The model being trained.</summary>
    public LanguageModel Model { get; }

    /// <summary>Parameters the optimizer updates: the LoRA adapters' under lora.*, else all of the model's.</summary>
    public long TrainableParameterCount => TrainableParameters().Sum(p => p.Param.NumberOfElements);

    /// <summary>Every parameter of the model, frozen base weights and LoRA adapters together.</summary>
    public long TotalParameterCount => Model.ParameterCount + (Model.Lora?.ParameterCount ?? 0);

    private IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> TrainableParameters() =>
        Model.Lora?.NamedParameters() ?? Model.named_parameters();

    /// <summary>The run folder (config.json, metrics.jsonl, tensorboard/, loss.png, checkpoints/).</summary>
    public string RunDirectory { get; }

    /// <summary>Progress so far; replaced by <see cref="Resume"/>.</summary>
    public TrainerState State { get; private set; }

    /// <summary>The device's peak FLOP/s used for MFU and where the figure comes from; null when unknown (MFU is then not reported).</summary>
    public PeakFlops? Peak => peak;

    /// <summary>The optimizer (exposed for checkpoint tests).</summary>
    public IOptimizer Optimizer => optimizer;

    /// <summary>
    /// What each rank held after the last update (parameters between steps, reduced gradients, optimizer state);
    /// collective: every rank must call it. Null before the first update.
    /// </summary>
    public IReadOnlyList<ShardingMemory>? MemoryPerRank()
    {
        var c = world;
        var mine = memory ?? new ShardingMemory(c.Rank, -1, -1, -1);
        var p = c.AllGather(mine.ParameterBytes);
        var g = c.AllGather(mine.GradientBytes);
        var o = c.AllGather(mine.OptimizerStateBytes);
        var m = c.AllGather(mine.PeakResidentBytes);
        return memory is null ? null : [.. Enumerable.Range(0, c.WorldSize).Select(r => new ShardingMemory(r, p[r], g[r], o[r]) { PeakResidentBytes = m[r] })];
    }

    private IOptimizer CreateOptimizer(IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> parameters)
    {
        var t = config.Training;
        return Optimizers.Create(t.Optimizer, parameters,
            new AdamWOptions { Beta1 = t.Beta1, Beta2 = t.Beta2, WeightDecay = t.WeightDecay },
            AdafactorOptions.PaLM with
            {
                Beta1 = t.Beta1, Factored = t.Factored,
                // LoRA's B starts at zero, so steps scaled by a parameter's RMS would stay at ε2·lr (1e-3 of the rate) and the
                // adapters would barely move: they take absolute steps, as AdamW's are.
                MultiplyByParameterScale = config.Lora is null,
                DecoupledWeightDecayFromLrSquared = t.WeightDecay > 0, WeightDecayRate = t.WeightDecay > 0 && t.WeightDecay != 1 ? t.WeightDecay : null,
            });
    }

    /// <summary>Restores weights, optimizer state, RNG and progress from a checkpoint folder.</summary>
    public void Resume(string checkpoint)
    {
        sharding?.GatherParameters();
        State = TrainingCheckpoint.Restore(checkpoint, Model, optimizer, random);
        lossScaler?.Restore(State.LossScale ?? config.Training.LossScale, State.SkippedUpdates);
        if (State.Seed != config.Training.Seed)
            throw new InvalidDataException($"{checkpoint} was trained with seed {State.Seed}, this run has training.seed = {config.Training.Seed}");
    }

    /// <summary>Trains until training.steps or until <paramref name="cancellation"/> fires (then checkpoints and returns).</summary>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        var t = config.Training;
        var clock = Stopwatch.StartNew();
        double elapsedBefore = State.ElapsedSeconds;
        Observer?.OnStart(State.Step, t.Steps);
        var parameters = TrainableParameters().Select(p => p.Param).ToList();
        sharding?.GatherParameters();
        parallel.BroadcastParameters(parameters); // every replica starts from the first replica's weights (its own part of them)
        long tokensPerUpdate = (long)t.BatchSize * t.GradientAccumulation * config.Data.SequenceLength;

        // Device-side accumulators for the logging interval: read back only when logging.
        using var lossSum = zeros(1, device: device);
        using var zLossSum = zeros(1, device: device);
        using var gradNorm = zeros(1, device: device);
        using var auxiliary = new AuxiliarySums();
        long intervalUpdates = 0;
        var intervalClock = Stopwatch.StartNew();
        string? lastCheckpoint = null;
        double? lastValidation = State.LastValidationLoss;
        bool interrupted = false;
        using var spikes = t.SpikeRecovery.Enabled ? new LossSpikeMonitor(t.SpikeRecovery, device) : null;
        string? lastGood = spikes is null ? null : SaveRollbackPoint();

        Model.train();
        while (State.Step < t.Steps)
        {
            double lr = schedule.At(State.Step);
            spikes?.BeginStep(lossSum);
            Update(lr, parameters, lossSum, zLossSum, gradNorm, auxiliary);
            spikes?.Observe(State.Step + 1, lossSum, gradNorm);
            intervalUpdates++;
            State = State with
            {
                LossScale = lossScaler?.Scale,
                SkippedUpdates = lossScaler?.Skipped ?? 0,
                Step = State.Step + 1,
                MicroBatchesConsumed = State.MicroBatchesConsumed + t.GradientAccumulation,
                TokensSeen = State.TokensSeen + tokensPerUpdate,
                ElapsedSeconds = elapsedBefore + clock.Elapsed.TotalSeconds,
            };
            Observer?.OnStep(State.Step);
            bool last = State.Step == t.Steps;
            interrupted = world.Any(cancellation.IsCancellationRequested) && !last; // all ranks stop together
            bool logPoint = State.Step % t.LogEvery == 0 || last || interrupted;
            // Decided on every rank: under ZeRO all ranks take part in gathering what rank 0 evaluates and saves.
            bool evalPoint = (t.EvalEvery > 0 && State.Step % t.EvalEvery == 0) || last;
            bool checkpointPoint = (t.CheckpointEvery > 0 && State.Step % t.CheckpointEvery == 0) || last || interrupted;

            // Spike flags are read only where the loop synchronises anyway, and always before a checkpoint.
            if (spikes is not null && (logPoint || evalPoint || checkpointPoint) && spikes.Detect() is { } spike)
            {
                lastGood = RollBack(spike, lastGood!, lr, lossSum, zLossSum, auxiliary);
                spikes.Reset();
                intervalUpdates = 0;
                intervalClock.Restart();
                interrupted = cancellation.IsCancellationRequested;
                if (interrupted)
                {
                    lastCheckpoint = lastGood;
                    break;
                }
                continue;
            }

            if (logPoint)
            {
                LogTraining(lr, intervalUpdates * tokensPerUpdate / intervalClock.Elapsed.TotalSeconds, intervalUpdates, lossSum, zLossSum, gradNorm, auxiliary);
                intervalUpdates = 0;
                intervalClock.Restart();
            }
            if (evalPoint || checkpointPoint) sharding?.GatherParameters(); // ZeRO-3: rank 0 evaluates and saves the whole model
            // Under tensor parallelism every rank takes part in each forward pass, so all evaluate (rank 0 alone logs).
            if ((primary || mesh.Model > 1) && evalPoint)
            {
                lastValidation = EvaluateAndLog();
                intervalClock.Restart(); // evaluation time is not training throughput
            }
            if (checkpointPoint)
            {
                using var saveScope = NewDisposeScope(); // the optimizer state gathered from other ranks
                var optimizerState = sharding is null ? optimizer.StateTensors() : sharding.GatherOptimizerState(optimizer, CreateOptimizer);
                if (mesh.Model > 1)
                {
                    lastCheckpoint = TrainingCheckpoint.SaveSharded(RunDirectory, Model, optimizerState, optimizer.StepCount, random, State, config, data.VocabularySpec, t.KeepCheckpoints, mesh);
                    if (primary) Observer?.OnCheckpoint(lastCheckpoint);
                }
                else if (primary)
                {
                    lastCheckpoint = TrainingCheckpoint.Save(RunDirectory, Model, optimizerState, optimizer.StepCount, random, State, config, data.VocabularySpec, t.KeepCheckpoints);
                    if (spikes is not null) lastGood = lastCheckpoint;
                    Observer?.OnCheckpoint(lastCheckpoint);
                }
                intervalClock.Restart();
            }
            if (interrupted) break;
        }
        sink.Flush();
        if (primary) SavePlot();
        world.Barrier(); // the last checkpoint exists on every rank's return
        return new TrainingResult(State.Step, interrupted, lastValidation, lastCheckpoint, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// One optimizer update: sums the gradients of training.gradient_accumulation micro-batches, clips
    /// their global norm and steps. Adds the mean losses and writes the pre-clip norm into the given
    /// device tensors, so nothing is read back to the host here.
    /// </summary>
    private void Update(double lr, IReadOnlyList<TorchSharp.Modules.Parameter> parameters, Tensor lossSum, Tensor zLossSum, Tensor gradNorm, AuxiliarySums auxiliary)
    {
        var t = config.Training;
        using var scope = NewDisposeScope();
        sharding?.GatherParameters(); // ZeRO-3: the whole model for forward and backward
        optimizer.ZeroGrad();
        for (int micro = 0; micro < t.GradientAccumulation; micro++)
        {
            var batch = data.Train.GetBatch(State.MicroBatchesConsumed + micro); // (B, T) each
            var loss = Model.Loss(batch.To(device), t.ZLoss);
            var total = loss.Total / t.GradientAccumulation;
            (lossScaler?.ScaleLoss(total) ?? total).backward(); // fp16: scaled, so that small gradients survive float16
            using (no_grad())
            {
                lossSum.add_(loss.CrossEntropy.detach() / t.GradientAccumulation);
                zLossSum.add_(loss.ZLoss.detach() / t.GradientAccumulation);
                auxiliary.Add(loss, 1.0 / t.GradientAccumulation, device);
            }
        }
        tensorParallel.SumPartialGradients(); // replicated K/V inside sharded attention: every rank's heads' part
        parallel.AverageGradients(); // clipping and the optimizer see the global batch's gradient
        if (lossScaler is not null && !lossScaler.Unscale(parameters, world))
        {
            // fp16 overflow: no update this step (the scale was halved); a norm of 0 keeps spike detection out of it.
            using (no_grad()) gradNorm.zero_();
            return;
        }
        // Clipping off (0) still measures the norm: clip at a bound no gradient reaches.
        double clip = t.ClipNorm > 0 ? t.ClipNorm : double.MaxValue;
        var norm = sharding is null ? tensorParallel.ClipGlobalNorm(clip) : sharding.ReduceAndClipGradients(clip);
        using (no_grad()) gradNorm.copy_(norm.reshape(1));
        long gradientBytes = sharding?.LastGradientBytes ?? ShardingMemory.GradientBytesOf(parameters);
        optimizer.Step(lr);
        sharding?.AfterStep(); // the owners' updates reach every rank (ZeRO-3: non-owned parameters are freed)
        memory = ShardingMemory.Measure(world.Rank, parameters, optimizer) with { GradientBytes = gradientBytes };
    }

    /// <summary>Reads the interval's device-side sums back (the only host sync of training), logs them and resets them.</summary>
    private void LogTraining(double lr, double tokensPerSecond, long updates, Tensor lossSum, Tensor zLossSum, Tensor gradNorm, AuxiliarySums auxiliary)
    {
        using var scope = NewDisposeScope(); // in-place ops hand back wrappers that must be freed too
        parallel.AverageMetrics([lossSum, zLossSum, .. auxiliary.Sums]); // every rank logs at the same steps
        var e = new MetricEvent(State.Step, MetricEvent.TrainSplit, lossSum.item<float>() / updates)
        {
            ZLoss = zLossSum.item<float>() / updates,
            LearningRate = lr,
            GradNorm = gradNorm.item<float>(),
            TokensPerSecond = tokensPerSecond,
            Mfu = peak is null ? null : Mfu.Compute(flopsPerToken, tokensPerSecond, peak.FlopsPerSecond * world.WorldSize),
            ElapsedSeconds = State.ElapsedSeconds,
            AuxiliaryLosses = auxiliary.Losses(updates),
            ExpertLoad = auxiliary.Statistic(ExpertLoadStatistic, updates),
            DroppedFraction = auxiliary.Statistic(DroppedFractionStatistic, updates)?[0],
            LossScale = lossScaler?.Scale,
            SkippedUpdates = lossScaler?.Skipped,
        };
        sink.Write(e);
        Observer?.OnTrainMetrics(e);
        lossSum.zero_();
        zLossSum.zero_();
        auxiliary.Reset();
    }

    /// <summary>Evaluates on the held-out split, logs it, redraws the loss plot; returns the loss.</summary>
    private double EvaluateAndLog()
    {
        var eval = Evaluate(out var tasks, out var imageAccuracy);
        foreach (var task in tasks?.Tasks ?? [])
        {
            var perTask = new MetricEvent(State.Step, MetricEvent.ValidationSplit, task.Score.Loss)
            {
                Perplexity = task.Score.Perplexity, BitsPerByte = task.Score.BitsPerByte, ElapsedSeconds = State.ElapsedSeconds, Task = task.Task,
                Metrics = task.Metrics.Count == 0 ? null : task.Metrics.ToDictionary(m => m.Name, m => m.Value, StringComparer.Ordinal),
            };
            sink.Write(perTask);
            Observer?.OnValidationMetrics(perTask);
        }
        State = State with { LastValidationLoss = eval.Loss };
        var e = new MetricEvent(State.Step, MetricEvent.ValidationSplit, eval.Loss)
        {
            Perplexity = eval.Perplexity, BitsPerByte = imageAccuracy is null ? eval.BitsPerByte : null, ElapsedSeconds = State.ElapsedSeconds,
            Metrics = imageAccuracy is { } accuracy ? new Dictionary<string, double>(StringComparer.Ordinal) { ["accuracy"] = accuracy } : null,
        };
        sink.Write(e);
        Observer?.OnValidationMetrics(e);
        if (primary) SavePlot();
        return eval.Loss;
    }

    /// <summary>
    /// Scores up to training.eval_batches held-out batches of the run's token stream, or, for tasks and
    /// mixtures, the first training.eval_batches × batch_size examples of each task's validation split
    /// (loss over all of them together).
    /// </summary>
    public EvaluationResult Evaluate() => Evaluate(out _, out _);

    private EvaluationResult Evaluate(out MixtureEvaluationResult? tasks, out double? imageAccuracy)
    {
        tasks = null;
        imageAccuracy = null;
        if (data.ValidationImages is { } images)
        {
            // An image classifier: each image is one prediction (a "token"); perplexity over the classes, no bytes.
            var scored = ImageEvaluator.Evaluate(Model, images, device, config.Training.EvalBatches * config.Training.BatchSize);
            imageAccuracy = scored.Accuracy;
            return new EvaluationResult(scored.Loss, Math.Exp(scored.Loss), double.NaN, scored.Images);
        }
        if (data.Validation is { } stream)
            return Evaluator.Evaluate(Model, stream, config.Training.EvalBatches, data.ValidationBytesPerToken, device);
        if (data.ImageTextValidation is { } imageTextRows)
            return Evaluator.Evaluate(Model, imageTextRows.EvaluationBatches(config.Training.EvalBatches), device);
        var t = config.Training;
        // An engine's paged cache holds whole layers; a split model decodes through the cache-free reference decoder.
        var evaluator = new TaskEvaluator(Model, data.Vocabulary, device, (mesh.Model > 1 ? null : decoder) ?? new ReferenceDecoder(), new TaskEvaluationOptions
        {
            MaxExamples = t.EvalBatches * t.BatchSize,
            SequenceLength = config.Data.SequenceLength,
            BatchSize = t.BatchSize,
            MaxDecodeLength = Math.Min(new TaskEvaluationOptions().MaxDecodeLength, Math.Max(1, config.Data.SequenceLength - 2)),
        });
        tasks = evaluator.EvaluateTasks(data.CorpusName, data.ValidationTasks, "validation");
        var score = tasks.Score;
        return new EvaluationResult(score.Loss, score.Perplexity, score.BitsPerByte, score.TokenCount);
    }

    private void SavePlot()
    {
        var events = JsonlMetricSink.ReadAll(Path.Combine(RunDirectory, "metrics.jsonl"));
        if (events.Count > 0) LossCurvePlot.Save(Path.Combine(RunDirectory, "loss.png"), events, $"Loom: {config.ModelPreset} on {data.CorpusName}");
    }

    /// <summary>The name under which MoE models report per-expert load fractions in <see cref="ModelLoss.Statistics"/>.</summary>
    public const string ExpertLoadStatistic = "expert_load";

    /// <summary>The name under which MoE models report the dropped fraction in <see cref="ModelLoss.Statistics"/>.</summary>
    public const string DroppedFractionStatistic = "dropped_fraction";

    /// <summary>Device-side sums of a model's auxiliary losses and statistics over a logging interval (no host sync until read).</summary>
    private sealed class AuxiliarySums : IDisposable
    {
        private readonly Dictionary<string, Tensor> losses = new(StringComparer.Ordinal);
        private readonly Dictionary<string, Tensor> statistics = new(StringComparer.Ordinal);

        public void Add(ModelLoss loss, double weight, Device device)
        {
            Accumulate(losses, loss.Auxiliary, weight, device);
            Accumulate(statistics, loss.Statistics, weight, device);
        }

        public IReadOnlyDictionary<string, double>? Losses(long updates) =>
            losses.Count == 0 ? null : losses.ToDictionary(p => p.Key, p => p.Value.to(float64).item<double>() / updates, StringComparer.Ordinal);

        public IReadOnlyList<double>? Statistic(string name, long updates) =>
            statistics.TryGetValue(name, out var sum) ? [.. sum.to(float64).cpu().data<double>().Select(v => v / updates)] : null;

        /// <summary>Every sum, in a fixed order (the same on every rank).</summary>
        public IEnumerable<Tensor> Sums => losses.Values.Concat(statistics.Values);

        public void Reset()
        {
            foreach (var t in losses.Values.Concat(statistics.Values)) t.zero_();
        }

        public void Dispose()
        {
            foreach (var t in losses.Values.Concat(statistics.Values)) t.Dispose();
        }

        private static void Accumulate(Dictionary<string, Tensor> sums, IReadOnlyDictionary<string, Tensor> values, double weight, Device device)
        {
            foreach (var (name, value) in values)
            {
                if (!sums.TryGetValue(name, out var sum))
                    sums[name] = sum = zeros(value.shape, float32, device).DetachFromDisposeScope();
                sum.add_(value.detach().to(float32) * weight);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        parallel.Dispose();
        mesh.Dispose();
        sharding?.Dispose();
        sink.Dispose();
        optimizer.Dispose();
        Model.Dispose();
        random.Dispose();
    }
}
