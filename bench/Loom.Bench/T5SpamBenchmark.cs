using System.Globalization;
using System.Text;
using Loom.Core;
using Loom.Data.Tasks;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Training;
using Loom.Training.Evaluation;
using Loom.Training.Metrics;

namespace Loom.Bench;

/// <summary>Flags of the <c>t5-spam</c> benchmark.</summary>
internal sealed record T5SpamSettings
{
    public long PretrainSteps { get; init; } = 600;
    public long FinetuneSteps { get; init; } = 600;
    public int? FinetuneSequenceLength { get; init; }
    public long Seed { get; init; }
    public string Device { get; init; } = "cpu";
    public string? RunDir { get; init; }
    public bool SkipDecoder { get; init; }
    public bool SkipT5 { get; init; }
    public double? FinetuneLearningRate { get; init; }
    public bool Resume { get; init; }

    public const string Usage = """
        usage: loom-bench t5-spam [flags]

        The T5 demo end to end, beside a decoder-only twin: pre-train t5-tiny with span corruption on
        books_span_corruption (configs/runs/t5-pretrain.json), fine-tune it on spam_assassin as text to text
        (configs/runs/t5-finetune-spam.json, training.init_from the pre-training run), then score and predict
        the whole validation split; the decoder-only tiny preset runs the same two phases on the same rows
        (inputs ++ targets in one sequence, loss on the targets): the same examples and steps, so the same
        training tokens. PASS when T5's accuracy is at least 95%.

          --pretrain-steps N   span-corruption steps of each model (default 600)
          --finetune-steps N   spam_assassin steps of each model (default 600)
          --finetune-seq N     tokens per fine-tuning row (default: the run file's 512); an email keeps its last tokens
          --finetune-lr X      fine-tuning learning rate (default: the run file's)
          --seed N             weights and batch order (default 0)
          --device D           cpu (default), cuda, cuda:N or auto
          --run-dir D          keep the runs under D (default: a temporary folder, deleted)
          --skip-decoder       train T5 only
          --skip-t5            train the decoder-only twin only (with --resume, two processes can train the two at once
                               into one --run-dir; a last --resume run then evaluates both and reports them side by side)
          --resume             with --run-dir: a phase whose run folder has checkpoints resumes from the newest
                               (a finished pre-training is not redone), as `loom train --resume` does
        """;

    public static T5SpamSettings Parse(IReadOnlyList<string> args)
    {
        var settings = BenchFlags.Parse(args, new T5SpamSettings(), (s, flag) => flag.Name switch
        {
            "--pretrain-steps" => s with { PretrainSteps = Math.Max(1, flag.NonNegativeLong()) },
            "--finetune-steps" => s with { FinetuneSteps = Math.Max(1, flag.NonNegativeLong()) },
            "--finetune-seq" => s with { FinetuneSequenceLength = Math.Clamp(flag.NonNegativeInt(), 16, 512) },
            "--finetune-lr" => s with { FinetuneLearningRate = flag.Number(0, inclusive: false) },
            "--seed" => s with { Seed = flag.NonNegativeLong() },
            "--device" => s with { Device = flag.Value() },
            "--run-dir" => s with { RunDir = flag.Value() },
            "--skip-decoder" => s with { SkipDecoder = true },
            "--skip-t5" => s with { SkipT5 = true },
            "--resume" => s with { Resume = true },
            _ => throw flag.Unknown(),
        });
        if (settings.SkipT5 && settings.SkipDecoder) throw new ArgumentException("--skip-t5 and --skip-decoder together leave nothing to train: drop one");
        return settings.Resume && settings.RunDir is null ? throw new ArgumentException("--resume needs --run-dir: the runs to resume are kept there") : settings;
    }
}

/// <summary>
/// The <c>t5-spam</c> benchmark: t5x's recipe (pre-train with span corruption, fine-tune text to text) on
/// CPU-sized data, measured by accuracy on SpamAssassin's whole validation split, beside a decoder-only
/// model given the same examples.
/// </summary>
internal static class T5SpamBenchmark
{
    private sealed record Outcome(string Family, string Preset, long Parameters, long Tokens, double PretrainLoss, double FinetuneLoss,
        double Accuracy, int Examples, double TrainingSeconds);

    public static string Run(T5SpamSettings s)
    {
        string root = s.RunDir ?? Path.Combine(Path.GetTempPath(), $"loom-bench-t5-{Environment.ProcessId}");
        double? loadBefore = MachineInfo.LoadAverage();
        try
        {
            var outcomes = new List<Outcome>();
            if (!s.SkipT5) outcomes.Add(Train("t5", "t5-tiny", [], s, root));
            // The decoder holds inputs ++ targets in one sequence of the run's length; its vocabulary is the same 358 ids.
            if (!s.SkipDecoder) outcomes.Add(Train("decoder_lm", "tiny", ["model.vocab_size=358", "model.max_sequence_length=512"], s, root));
            return Report(s, outcomes, (loadBefore, MachineInfo.LoadAverage()));
        }
        finally
        {
            if (s.RunDir is null && Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    private static Outcome Train(string family, string preset, string[] modelOverrides, T5SpamSettings s, string root)
    {
        string pretrainDir = Path.Combine(root, $"{preset}-pretrain"), finetuneDir = Path.Combine(root, $"{preset}-finetune");
        string[] common = [.. modelOverrides, $"training.seed={s.Seed}", $"device={s.Device}"];
        var pretrain = RunPhase("t5-pretrain", preset, [.. common, $"training.steps={s.PretrainSteps}", $"training.warmup_steps={Math.Min(100, s.PretrainSteps / 10)}",
            $"training.eval_every={s.PretrainSteps}", $"training.checkpoint_every={s.PretrainSteps}"], pretrainDir, s.Resume, out _, out var pretrainState);
        string[] finetuneLength = s.FinetuneSequenceLength is int n ? [$"data.sequence_length={n}"] : [];
        if (s.FinetuneLearningRate is double lr) finetuneLength = [.. finetuneLength, string.Create(CultureInfo.InvariantCulture, $"training.learning_rate={lr}")];
        var finetune = RunPhase("t5-finetune-spam", preset, [.. common, .. finetuneLength, $"training.steps={s.FinetuneSteps}", $"training.init_from={pretrainDir}",
            // Evaluations (the first 128 validation emails, a fair sample) and checkpoints four times along the way, to follow progress and to resume.
            $"training.eval_every={Math.Max(1, s.FinetuneSteps / 4)}", $"training.checkpoint_every={Math.Max(1, s.FinetuneSteps / 4)}"], finetuneDir, s.Resume, out var finetuned, out var finetuneState);
        using (finetuned.Model)
        {
            var accuracy = finetuned.Accuracy;
            return new Outcome(family, preset, finetuned.Model.ParameterCount, pretrainState.TokensSeen + finetuneState.TokensSeen, pretrain, finetune,
                accuracy.Value, accuracy.Examples, pretrainState.ElapsedSeconds + finetuneState.ElapsedSeconds);
        }
    }

    private sealed record Finetuned(LanguageModel Model, (double Value, int Examples) Accuracy);

    /// <summary>Trains one phase through the trainer as <c>loom train -c RUN</c> would; returns its last held-out loss.</summary>
    private static double RunPhase(string runFile, string preset, string[] overrides, string runDir, bool resume, out Finetuned finetuned, out TrainerState state)
    {
        var config = RunConfigLoader.Load(runFile, preset, overrides, ModelPresets.DefaultConfigsDirectory);
        var device = Devices.Resolve(config.Device);
        var data = TrainingDataLoader.Load(config.Data, config.Training, new Progress<string>(m => Console.Error.WriteLine(m)), layout: config.Model.FeatureLayout);
        string? newest = resume && Directory.Exists(runDir) ? TrainingCheckpoint.List(runDir).LastOrDefault() : null;
        if (newest is null && Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true);
        var trainer = new Trainer(config, data, runDir, device, new EngineSequenceDecoder(data.Vocabulary));
        if (newest is not null)
        {
            trainer.Resume(newest);
            Console.Error.WriteLine($"t5-spam: resumed {runDir} at step {trainer.State.Step}");
        }
        Console.Error.WriteLine($"t5-spam: {runFile} with {preset} ({config.Model.Architecture}, {trainer.Model.ParameterCount:N0} parameters) for {config.Training.Steps} steps");
        var result = trainer.Run();
        state = trainer.State; // tokens and training seconds, across resumptions
        finetuned = new Finetuned(trainer.Model, (double.NaN, 0));
        if (runFile == "t5-finetune-spam")
        {
            // The whole validation split, predicted greedily through the engine and scored by the task's accuracy.
            var task = TaskRegistry.Find(TaskRegistry.WithBuiltIns(data.Vocabulary), "spam_assassin", data.Vocabulary);
            var evaluator = new TaskEvaluator(trainer.Model, data.Vocabulary, device, new EngineSequenceDecoder(data.Vocabulary),
                // The longest label, "spam", is 4 tokens before EOS. A decode budget of 4 leaves the decoder-only model
                // prompts as long as the inputs it trained on (its prompt and answer share the row: L − 5 tokens, the
                // room training keeps for the longest target), so both families see as much of every email.
                new TaskEvaluationOptions { SequenceLength = config.Data.SequenceLength, BatchSize = config.Training.BatchSize, MaxDecodeLength = 4 });
            var evaluation = evaluator.Evaluate(task, "validation");
            finetuned = finetuned with { Accuracy = (evaluation.Metrics.Single(m => m.Name == "accuracy").Value, evaluation.ExampleCount) };
        }
        else
        {
            trainer.Dispose();
        }
        return result.ValidationLoss ?? double.NaN;
    }

    private static string Report(T5SpamSettings s, List<Outcome> outcomes, (double? Before, double? After) load)
    {
        var text = new StringBuilder();
        void Line(string line) => text.AppendLine(line);
        var t5 = outcomes.FirstOrDefault(o => o.Family == "t5");
        Line($"## t5-spam: span-corruption pre-training ({s.PretrainSteps} steps) then spam_assassin fine-tuning ({s.FinetuneSteps} steps)");
        Line("");
        Line($"- machine: {MachineInfo.CpuModel()}, {Environment.ProcessorCount} cores, {MachineInfo.OperatingSystem()}; load average {Fmt(load.Before)} -> {Fmt(load.After)}");
        Line($"- commit: {MachineInfo.GitCommit()}, device {s.Device}, seed {s.Seed}; recipes configs/runs/t5-pretrain.json and t5-finetune-spam.json"
             + (s.FinetuneSequenceLength is int n ? $" with fine-tuning rows of {n} tokens" : "")
             + (s.FinetuneLearningRate is double lr ? string.Create(CultureInfo.InvariantCulture, $" at learning rate {lr}") : ""));
        Line("");
        Line("| model | parameters | training tokens | pre-training held-out loss | fine-tuning held-out loss | validation accuracy | examples | training seconds |");
        Line("|---|---|---|---|---|---|---|---|");
        foreach (var o in outcomes)
            Line(string.Create(CultureInfo.InvariantCulture,
                $"| {o.Preset} ({o.Family}) | {o.Parameters:N0} | {o.Tokens:N0} | {o.PretrainLoss:F4} | {o.FinetuneLoss:F4} | {o.Accuracy:F2}% | {o.Examples} | {o.TrainingSeconds:F0} |"));
        Line("");
        if (t5 is not null)
            Line(string.Create(CultureInfo.InvariantCulture, $"{(t5.Accuracy >= 95 ? "PASS" : "FAIL")}: T5 accuracy {t5.Accuracy:F2}% on the whole validation split (needs at least 95%)"));
        return text.ToString();
    }

    private static string Fmt(double? v) => v is double d ? d.ToString("F3", CultureInfo.InvariantCulture) : "n/a";
}
