using Loom.Inference.Engine;
using System.Globalization;
using Loom.Core;
using Loom.Distributed;
using Loom.Training;
using Loom.Training.DataParallelism;
using Spectre.Console;
using TorchSharp;

namespace Loom.Cli;

/// <summary>A resolved training run: its config, folder and the checkpoint it resumes from.</summary>
internal sealed record PreparedRun(RunConfig Config, string RunDirectory, string? ResumeFrom);

/// <summary>Shared by <c>train</c> and <c>demo</c>: resolves the config and run folder, loads data, trains with progress and Ctrl-C handling.</summary>
internal static class TrainingSession
{
    public static PreparedRun Prepare(ConfigSettings settings, bool resume)
    {
        if (settings.Threads is int threads)
        {
            if (threads <= 0) throw new ArgumentException($"--threads {threads} must be positive");
            torch.set_num_threads(threads);
        }
        if (resume)
        {
            if (settings.RunDir is null) throw new ArgumentException("--resume needs --run-dir DIR: the run folder to continue");
            string saved = Path.Combine(settings.RunDir, "config.json");
            if (!File.Exists(saved)) throw new FileNotFoundException($"cannot resume: {saved} not found (is --run-dir a Loom run folder?)");
            var checkpoint = TrainingCheckpoint.Resolve(settings.RunDir);
            var config = RunConfigLoader.Load(saved, settings.Preset, settings.Overrides());
            return new PreparedRun(config, settings.RunDir, checkpoint);
        }
        var fresh = RunConfigLoader.Load(settings.Config, settings.Preset, settings.Overrides());
        string dir = settings.RunDir ?? Path.Combine("runs", $"{Path.GetFileNameWithoutExtension(fresh.ModelPreset)}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
        if (TrainingCheckpoint.List(dir).Count > 0)
            throw new ArgumentException($"{dir} already holds checkpoints: pass --resume to continue it, or choose another --run-dir");
        return new PreparedRun(fresh, dir, null);
    }

    /// <summary>
    /// Trains the run. Under <c>mpirun -n N</c> (or <c>srun</c>) each process is one data-parallel rank: it trains
    /// on its share of every global batch, and only rank 0 prints, logs and checkpoints. An error on any rank
    /// ends the whole job (MPI_Abort) rather than leaving the other ranks waiting in a collective.
    /// </summary>
    public static TrainingResult Train(PreparedRun run, CancellationToken cancellationToken)
    {
        var device = Devices.Resolve(run.Config.Device);
        using var communicator = Communicators.FromEnvironment(device);
        if (communicator.WorldSize == 1) return Train(run, device, communicator, Console.Out, cancellationToken);
        // Every rank finds the same bad mesh before any collective: a plain error on each, not MPI_Abort, which can
        // kill the job before mpirun has forwarded the message.
        var (replicas, modelAxis) = DeviceMesh.Shape(communicator.WorldSize, run.Config.Parallelism.Data, run.Config.Parallelism.Model);
        // Likewise a global batch that does not split over the replicas (the data loader would find it on every rank
        // at once, inside the try below, and the first rank's MPI_Abort could swallow every rank's message).
        _ = new DataShard(communicator.Rank / modelAxis, replicas).RowsPerRank(run.Config.Training.BatchSize);
        if (modelAxis > 1)
        {
            // The same for the model's split: tried on the meta device (shapes only) with a stand-in rank.
            using var probe = run.Config.Model.Build(new torch.Device(DeviceType.META));
            probe.ShardForTensorParallel(new OneRankOfMany(0, modelAxis), run.Config.Partitioning.Parse());
        }
        try
        {
            // Rank 0 speaks for the job; the other ranks' output would only repeat it.
            return Train(run, device, communicator, communicator.Rank == 0 ? Console.Out : TextWriter.Null, cancellationToken);
        }
        catch (Exception e) when (e is not ErrorOnEveryRankException) // found by all ranks at once: each exits on its own
        {
            string message = LoomApp.IsUserError(e) ? LoomApp.OneLine(e) : e.ToString();
            Console.Error.WriteLine($"loom: error: rank {communicator.Rank} of {communicator.WorldSize}: {message}");
            Console.Error.Flush();
            communicator.Abort(1);
            throw; // not reached: Abort ends the process
        }
    }

    private static TrainingResult Train(PreparedRun run, torch.Device device, ICommunicator communicator, TextWriter output, CancellationToken cancellationToken)
    {
        var config = run.Config;
        bool primary = communicator.Rank == 0;
        output.WriteLine($"device: {Devices.Describe(device)}");
        // The mesh's data axis splits the batch; the ranks of one model group see the same rows.
        var (replicas, modelAxis) = DeviceMesh.Shape(communicator.WorldSize, config.Parallelism.Data, config.Parallelism.Model);
        if (communicator.WorldSize > 1 && modelAxis == 1)
            output.WriteLine(FormattableString.Invariant($"data parallel: {communicator.WorldSize} ranks ({communicator.Backend}), {config.Training.BatchSize / communicator.WorldSize} of the {config.Training.BatchSize} rows of every batch each"));
        else if (modelAxis > 1)
            output.WriteLine(FormattableString.Invariant($"tensor parallel: mesh {replicas} × {modelAxis} (data × model) over {communicator.WorldSize} ranks ({communicator.Backend}); each layer's heads and MLP units split {modelAxis} ways, {config.Training.BatchSize / replicas} of the {config.Training.BatchSize} rows of every batch per replica"));
        var shard = new DataShard(communicator.Rank / modelAxis, replicas);
        var data = TrainingDataLoader.Load(config.Data, config.Training, new Progress<string>(m => output.WriteLine(m)), layout: config.Model.FeatureLayout, shard: shard);
        output.WriteLine($"data: {data.Description}");

        if (primary)
        {
            Directory.CreateDirectory(run.RunDirectory);
            File.WriteAllText(Path.Combine(run.RunDirectory, "config.json"), RunConfigLoader.ToJson(config));
        }
        using var trainer = new Trainer(config, data, run.RunDirectory, device, new EngineSequenceDecoder(data.Vocabulary), communicator);
        if (run.ResumeFrom is not null)
        {
            trainer.Resume(run.ResumeFrom);
            output.WriteLine($"resumed from {run.ResumeFrom} (step {trainer.State.Step})");
        }
        else if (trainer.InitialisedFrom is { } initialisedFrom)
        {
            output.WriteLine($"initialised the weights from {initialisedFrom} (training.init_from)");
        }
        string peak = trainer.Peak is { } p
            ? FormattableString.Invariant($"MFU against {p.FlopsPerSecond / 1e12:G3} TFLOP/s ({p.Source})")
            : "MFU not reported: peak FLOP/s unknown for this device (pass --set training.peak_tflops=N)";
        string active = trainer.Model.ActiveParameterCount == trainer.Model.ParameterCount ? "" : FormattableString.Invariant($" ({trainer.Model.ActiveParameterCount / 1e6:F2}M active per token)");
        output.WriteLine(FormattableString.Invariant($"model: {config.ModelPreset} ({config.Model.Architecture}), {trainer.Model.ParameterCount / 1e6:F2}M parameters{active}; {peak}"));
        if (trainer.Model.Lora is { } lora)
            output.WriteLine(FormattableString.Invariant($"LoRA: rank {lora.Options.Rank}, alpha {lora.Options.Alpha}, dropout {lora.Options.Dropout} on {string.Join(", ", lora.Options.CanonicalTargets())} ({lora.Layers.Count} kernels) over {lora.BaseModel}"));
        output.WriteLine(FormattableString.Invariant($"trainable parameters: {trainer.TrainableParameterCount:N0} of {trainer.TotalParameterCount:N0} ({100.0 * trainer.TrainableParameterCount / trainer.TotalParameterCount:F2}%)"));
        output.WriteLine($"run folder: {run.RunDirectory}");
        if (trainer.State.Step >= config.Training.Steps)
            throw new ArgumentException($"the run is already at step {trainer.State.Step} of training.steps = {config.Training.Steps}: pass --set training.steps=N with a larger N to continue");

        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (interrupt.IsCancellationRequested) return; // a second Ctrl-C kills the process
            e.Cancel = true;
            interrupt.Cancel();
            if (primary) Console.Error.WriteLine("loom: stopping after this step and writing a checkpoint (Ctrl-C again to abort)");
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var result = primary ? ConsoleProgress.Show(progress => Run(trainer, progress, interrupt.Token)) : trainer.Run(interrupt.Token);
            if (trainer.MemoryPerRank() is { } memory) // collective: every rank measures, rank 0 prints
                output.WriteLine(FormattableString.Invariant($"memory per rank (training.zero_stage = {config.Training.ZeroStage}): {string.Join("; ", memory)}"));
            output.WriteLine(result.Interrupted
                ? $"interrupted at step {result.Step}; resume with: ./loom train --resume --run-dir {run.RunDirectory}"
                : FormattableString.Invariant($"done: {result.Step} steps in {result.ElapsedSeconds:F0}s, held-out loss {result.ValidationLoss:F4} nats/token"));
            output.WriteLine($"checkpoint: {result.Checkpoint}");
            output.WriteLine($"metrics: {Path.Combine(run.RunDirectory, "metrics.jsonl")}, plot: {Path.Combine(run.RunDirectory, "loss.png")}, TensorBoard: {Path.Combine(run.RunDirectory, "tensorboard")}");
            return result;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static TrainingResult Run(Trainer trainer, ConsoleProgress progress, CancellationToken token)
    {
        trainer.Observer = progress;
        return trainer.Run(token);
    }
}
