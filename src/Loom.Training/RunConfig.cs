using Loom.Models;
using Loom.Models.Adapters;

namespace Loom.Training;

/// <summary>Where the training text comes from and how it becomes token rows.</summary>
public sealed record DataOptions
{
    /// <summary>Built-in corpus used when <see cref="Path"/> is not set (currently "austen").</summary>
    public string Corpus { get; init; } = "austen";

    /// <summary>A text file or folder to train on instead of the built-in corpus.</summary>
    public string? Path { get; init; }

    /// <summary>
    /// A registered task (see <c>loom data list</c>) or a task file (.json) to train on. A language-modelling
    /// task (only "targets") is trained as one token stream; a task with "inputs" and "targets" as packed
    /// rows with loss on the targets. Takes precedence over <see cref="Corpus"/>.
    /// </summary>
    public string? Task { get; init; }

    /// <summary>A registered mixture to train on: its tasks' examples packed and sampled by the mixture's rates.</summary>
    public string? Mixture { get; init; }

    /// <summary>
    /// Folders of task and mixture files (*.json) to register besides the built-in tasks; relative paths
    /// are relative to the current directory. configs/tasks is read too when it exists.
    /// </summary>
    public IReadOnlyList<string> TaskDirs { get; init; } = [];

    /// <summary>
    /// Read tasks from the offline cache (<c>loom data cache TASK</c>) instead of running their pipelines; a
    /// missing or stale cache is an error.
    /// </summary>
    public bool UseCache { get; init; }

    /// <summary>The offline cache's root folder; default ~/.cache/loom/tasks (or $XDG_CACHE_HOME/loom/tasks).</summary>
    public string? CacheDir { get; init; }

    /// <summary>"byte" (lossless UTF-8 bytes), "tiktoken:gpt2|cl100k_base|o200k_base", "hf:PATH" (a Hugging Face
    /// tokenizer.json or its folder), or the path of a SentencePiece .model file; any of them with "+extra_ids=N" sentinels.</summary>
    public string Vocabulary { get; init; } = "byte";

    /// <summary>Tokens per training row.</summary>
    public int SequenceLength { get; init; } = 256;

    /// <summary>Fraction of a user corpus held out for validation (the Austen corpus holds out Persuasion).</summary>
    public double ValidationFraction { get; init; } = 0.1;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public DataOptions Validate()
    {
        if (SequenceLength <= 0) throw new ArgumentException($"data.sequence_length = {SequenceLength} must be positive");
        if (!(ValidationFraction > 0 && ValidationFraction < 1)) throw new ArgumentException($"data.validation_fraction = {ValidationFraction} must be between 0 and 1");
        if (string.IsNullOrWhiteSpace(Path) && Task is null && Mixture is null && Corpus != "austen") throw new ArgumentException($"data.corpus = '{Corpus}' is unknown: use \"austen\", set data.task (--task NAME) or data.path (--data FILE_OR_DIR)");
        if (new[] { Path is not null, Task is not null, Mixture is not null }.Count(set => set) > 1)
            throw new ArgumentException("more than one of data.path, data.task and data.mixture is set: train on one of them");
        if (UseCache && Task is null && Mixture is null)
            throw new ArgumentException("data.use_cache = true needs data.task or data.mixture: the cache holds preprocessed tasks");
        return this;
    }
}

/// <summary>The optimisation and bookkeeping of a training run.</summary>
public sealed record TrainerOptions
{
    /// <summary>Number of optimizer updates.</summary>
    public long Steps { get; init; } = 1000;

    /// <summary>
    /// Rows per micro-batch over all data-parallel ranks (the global batch): under <c>mpirun -n N</c> each rank
    /// trains on batch_size / N of them, so N ranks follow the one-process run with the same value.
    /// </summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Micro-batches whose gradients are summed per update.</summary>
    public int GradientAccumulation { get; init; } = 1;

    /// <summary>"adafactor" (PaLM) or "adamw".</summary>
    public string Optimizer { get; init; } = "adafactor";

    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-2;

    /// <summary>"rsqrt" (PaLM: warm-up then 1/sqrt(step)), "cosine" or "constant".</summary>
    public string Schedule { get; init; } = "rsqrt";

    /// <summary>Linear warm-up steps.</summary>
    public long WarmupSteps { get; init; } = 100;

    /// <summary>Final learning rate of the cosine schedule.</summary>
    public double MinLearningRate { get; init; }

    /// <summary>First-moment decay (Adafactor: 0 disables momentum).</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW second-moment decay (Adafactor uses 1 - step^-0.8).</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>Weight decay. AdamW: decoupled rate λ (p ← p·(1 − lr·λ)). Adafactor: PaLM's lr² decay scaled by
    /// this value (p ← p·(1 − weight_decay·lr²); PaLM uses 1).</summary>
    public double WeightDecay { get; init; }

    /// <summary>Adafactor: factor second moments of matrices (PaLM: false).</summary>
    public bool Factored { get; init; }

    /// <summary>Global gradient-norm clipping threshold (0 disables).</summary>
    public double ClipNorm { get; init; } = 1.0;

    /// <summary>Weight of the z-loss log²Z (PaLM: 1e-4).</summary>
    public double ZLoss { get; init; } = 1e-4;

    /// <summary>Seed of the initialisation and of the batch order.</summary>
    public long Seed { get; init; }

    /// <summary>Updates between training-loss log lines.</summary>
    public long LogEvery { get; init; } = 10;

    /// <summary>Updates between held-out evaluations (0 = only at the end).</summary>
    public long EvalEvery { get; init; } = 200;

    /// <summary>Batches per held-out evaluation.</summary>
    public int EvalBatches { get; init; } = 16;

    /// <summary>Updates between checkpoints (0 = only at the end).</summary>
    public long CheckpointEvery { get; init; } = 500;

    /// <summary>Checkpoints kept; older ones are deleted.</summary>
    public int KeepCheckpoints { get; init; } = 3;

    /// <summary>
    /// A checkpoint folder, or a run folder (its newest checkpoint), whose model weights initialise this
    /// run instead of the seeded random initialisation: fine-tuning from a pre-trained model, as t5x's
    /// <c>initial_checkpoint_path</c>. Only the weights are taken (the optimizer, its schedule and the step
    /// start afresh). The checkpoint must hold a model of this run's architecture and shape; relative
    /// paths are relative to the current directory. Null (the default) initialises from training.seed.
    /// Resuming a run (<c>--resume</c>) restores its own checkpoint over these weights.
    /// </summary>
    public string? InitFrom { get; init; }

    /// <summary>Peak FLOP/s of the device for MFU, in TFLOP/s; null = detect.</summary>
    public double? PeakTflops { get; init; }

    /// <summary>
    /// "fp32" (the default) or "bf16": bfloat16 matmuls and attention over float32 master weights and optimizer
    /// state (see <see cref="ComputePrecision"/>); norms, the router, the softmax and the loss stay float32.
    /// Held-out evaluation during training uses it too; checkpoints hold float32 weights and load in float32.
    /// </summary>
    public string Precision { get; init; } = "fp32";

    /// <summary>
    /// fp16 only: the initial loss scale of dynamic loss scaling (PyTorch's GradScaler: 65536). An update whose
    /// gradients overflow is skipped and the scale halved; after <see cref="LossScaleGrowthInterval"/> clean updates it doubles.
    /// </summary>
    public double LossScale { get; init; } = 65536;

    /// <summary>fp16 only: clean updates after which the loss scale doubles (GradScaler: 2000).</summary>
    public int LossScaleGrowthInterval { get; init; } = 2000;

    /// <summary>Automatic rollback and data skipping on loss spikes (training.spike_recovery.*; off by default).</summary>
    public Recovery.SpikeRecoveryOptions SpikeRecovery { get; init; } = new();

    /// <summary>
    /// Sharded data parallelism (ZeRO) under several ranks: 0 (the default) replicates everything on every rank;
    /// 1 shards the optimizer state by parameter owner; 2 also the gradients; 3 also the parameters between steps.
    /// Every stage trains to the same weights; it changes only what each rank keeps.
    /// </summary>
    public int ZeroStage { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public TrainerOptions Validate()
    {
        Check(Steps > 0, "steps", Steps, "must be positive");
        Check(BatchSize > 0, "batch_size", BatchSize, "must be positive");
        Check(GradientAccumulation > 0, "gradient_accumulation", GradientAccumulation, "must be positive");
        Check(Optimizer is "adafactor" or "adamw", "optimizer", Optimizer, "must be \"adafactor\" or \"adamw\"");
        Check(Schedule is "rsqrt" or "cosine" or "constant", "schedule", Schedule, "must be \"rsqrt\", \"cosine\" or \"constant\"");
        Check(LearningRate > 0, "learning_rate", LearningRate, "must be positive");
        Check(WarmupSteps >= 0, "warmup_steps", WarmupSteps, "must be 0 or more");
        Check(Schedule != "cosine" || WarmupSteps < Steps, "warmup_steps", WarmupSteps, $"must be less than training.steps = {Steps} for the cosine schedule");
        Check(MinLearningRate >= 0 && MinLearningRate <= LearningRate, "min_learning_rate", MinLearningRate, "must be between 0 and learning_rate");
        Check(Beta1 >= 0 && Beta1 < 1, "beta1", Beta1, "must be in [0, 1)");
        Check(Beta2 > 0 && Beta2 < 1, "beta2", Beta2, "must be in (0, 1)");
        Check(WeightDecay >= 0, "weight_decay", WeightDecay, "must be 0 or more");
        Check(ClipNorm >= 0, "clip_norm", ClipNorm, "must be 0 or more");
        Check(ZLoss >= 0, "z_loss", ZLoss, "must be 0 or more");
        Check(LogEvery > 0, "log_every", LogEvery, "must be positive");
        Check(EvalEvery >= 0, "eval_every", EvalEvery, "must be 0 or more");
        Check(EvalBatches > 0, "eval_batches", EvalBatches, "must be positive");
        Check(CheckpointEvery >= 0, "checkpoint_every", CheckpointEvery, "must be 0 or more");
        Check(KeepCheckpoints > 0, "keep_checkpoints", KeepCheckpoints, "must be positive");
        Check(ZeroStage is >= 0 and <= 3, "zero_stage", ZeroStage, "must be 0 (plain data parallelism), 1 (shard optimizer state), 2 (and gradients) or 3 (and parameters)");
        Check(PeakTflops is null || PeakTflops > 0, "peak_tflops", PeakTflops ?? 0, "must be positive");
        Check(InitFrom is null || !string.IsNullOrWhiteSpace(InitFrom), "init_from", $"'{InitFrom}'", "must name a checkpoint or run folder, or be left out");
        ComputePrecisions.Parse(Precision);
        Check(LossScale >= 1 && double.IsFinite(LossScale), "loss_scale", LossScale, "must be a finite number of at least 1");
        Check(LossScaleGrowthInterval > 0, "loss_scale_growth_interval", LossScaleGrowthInterval, "must be positive");
        (SpikeRecovery ?? throw new ArgumentException("training.spike_recovery must be an object such as {\"enabled\": true}, or be left out")).Validate();
        return this;
    }

    private static void Check(bool ok, string name, object value, string rule)
    {
        if (!ok) throw new ArgumentException($"training.{name} = {value} {rule}");
    }
}

/// <summary>
/// How the ranks of a job (<c>mpirun -n N</c>) are laid out as a (data, model) mesh (see <see cref="Loom.Distributed.DeviceMesh"/>):
/// <c>parallelism.model</c> ranks split each layer (tensor parallelism), <c>parallelism.data</c> replicas of them split the batch.
/// </summary>
public sealed record ParallelismOptions
{
    /// <summary>Model replicas, each on its share of every global batch; 0 (the default) takes the ranks the model axis leaves.</summary>
    public int Data { get; init; }

    /// <summary>Ranks that split each layer's heads and MLP units (Megatron-style); 1 (the default) keeps every layer whole.</summary>
    public int Model { get; init; } = 1;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public ParallelismOptions Validate()
    {
        if (Data < 0) throw new ArgumentException($"parallelism.data = {Data} must be positive, or 0 for the ranks the model axis leaves");
        if (Model <= 0) throw new ArgumentException($"parallelism.model = {Model} must be positive");
        return this;
    }
}

/// <summary>t5x's logical-axis rules, from the config's <c>partitioning</c> section.</summary>
public sealed record PartitioningOptions
{
    /// <summary>
    /// Ordered [logical axis, mesh axis or null] pairs, for example <c>[["heads", "model"], ["mlp", "model"], ["embed", null]]</c>;
    /// null uses <see cref="Loom.Models.Parallelism.PartitionRules.Default"/> (heads, kv_heads and mlp over the model axis).
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string?>>? Rules { get; init; }

    /// <summary>The parsed rules; throws <see cref="ArgumentException"/> naming a bad rule.</summary>
    public Loom.Models.Parallelism.PartitionRules Parse() => Loom.Models.Parallelism.PartitionRules.Parse(Rules);
}

/// <summary>A whole training run: model, data and trainer options, resolved from presets, run files and overrides.</summary>
public sealed record RunConfig
{
    /// <summary>Name or path of the model preset the model options started from (informational once resolved).</summary>
    public string ModelPreset { get; init; } = "tiny";

    /// <summary>Model options, tagged by <c>architecture</c> (decoder_lm or t5).</summary>
    public ModelOptions Model { get; init; } = ModelArchitectures.DefaultOptions();

    /// <summary>Data options.</summary>
    public DataOptions Data { get; init; } = new();

    /// <summary>Trainer options.</summary>
    public TrainerOptions Training { get; init; } = new();

    /// <summary>Device: cpu, cuda, cuda:N or auto.</summary>
    public string Device { get; init; } = "auto";

    /// <summary>The (data, model) mesh of a multi-rank job.</summary>
    public ParallelismOptions Parallelism { get; init; } = new();

    /// <summary>How parameters' logical axes map onto the mesh.</summary>
    public PartitioningOptions Partitioning { get; init; } = new();

    /// <summary>
    /// LoRA fine-tuning (<c>--set lora.rank=8</c>): the base weights of training.init_from stay frozen and only low-rank
    /// adapters of lora.target_modules train; checkpoints hold the adapter alone. Null (the default) trains every weight.
    /// </summary>
    public LoraOptions? Lora { get; init; }

    /// <summary>Validates every section; throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public RunConfig Validate()
    {
        Model.Validate();
        Data.Validate();
        Training.Validate();
        (Parallelism ?? throw new ArgumentException("parallelism must be an object such as {\"model\": 2}, or be left out")).Validate();
        (Partitioning ?? throw new ArgumentException("partitioning must be an object such as {\"rules\": [[\"heads\", \"model\"]]}, or be left out")).Parse();
        if (Training.Precision == "fp16" && Training.ZeroStage > 0)
            throw new ArgumentException($"training.precision = fp16 does not combine with training.zero_stage = {Training.ZeroStage} yet (the overflow check needs every gradient before ZeRO reduces them): use bf16, which needs no loss scaling");
        if (Parallelism.Model > 1)
        {
            if (Training.ZeroStage > 0)
                throw new ArgumentException($"training.zero_stage = {Training.ZeroStage} does not combine with parallelism.model = {Parallelism.Model} yet: use ZeRO with data parallelism alone, or tensor parallelism with zero_stage = 0");
            if (Training.Optimizer == "adafactor")
                throw new ArgumentException($"training.optimizer = adafactor does not combine with parallelism.model = {Parallelism.Model} yet (its update clipping and factored statistics span whole tensors, which are split): set training.optimizer = adamw");
        }
        if (Data.SequenceLength > Model.MaxSequenceLength)
            throw new ArgumentException($"data.sequence_length = {Data.SequenceLength} exceeds model.max_sequence_length = {Model.MaxSequenceLength}");
        if (Lora is not null)
        {
            Lora.Validate();
            if (Training.InitFrom is null)
                throw new ArgumentException("lora.* is set but training.init_from is not: LoRA adapts a trained base, so pass --init-from CHECKPOINT (or hf:DIR)");
            if (Parallelism.Model > 1 || Training.ZeroStage > 0)
                throw new ArgumentException("lora.* does not combine with parallelism.model > 1 or training.zero_stage > 0 yet: the adapters are small, train them data parallel (zero_stage = 0)");
        }
        return this;
    }
}
