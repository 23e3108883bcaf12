using System.Globalization;
using System.Text.Json;
using Loom.Core;
using Loom.Data;
using Loom.Models;
using Loom.Training.Optimization;
using static TorchSharp.torch;

namespace Loom.Training;

/// <summary>Everything besides tensors that a resumed run needs to continue bit-identically.</summary>
public sealed record TrainerState
{
    /// <summary>Completed optimizer updates.</summary>
    public long Step { get; init; }

    /// <summary>Micro-batches consumed (the data position; batches are a pure function of seed and index).</summary>
    public long MicroBatchesConsumed { get; init; }

    /// <summary>Training tokens consumed.</summary>
    public long TokensSeen { get; init; }

    /// <summary>Seed of the batch order.</summary>
    public long Seed { get; init; }

    /// <summary>Wall-clock seconds spent training before this checkpoint.</summary>
    public double ElapsedSeconds { get; init; }

    /// <summary>Held-out loss at the last evaluation, if any.</summary>
    public double? LastValidationLoss { get; init; }

    /// <summary>Loss-spike rollbacks so far (training.spike_recovery), counted against max_rollbacks across resumes.</summary>
    public int Rollbacks { get; init; }
}

/// <summary>
/// Checkpoint folders of a run: <c>checkpoints/step_NNNNNNNN/</c> with the model (model.safetensors,
/// model.json), the optimizer state and the run's RNG (optimizer.safetensors), the trainer state
/// (trainer_state.json) and the resolved config. A folder is written under a temporary name and
/// renamed when complete, so a crash never leaves a checkpoint that looks whole.
/// </summary>
public static class TrainingCheckpoint
{
    private const string Prefix = "step_";
    private const string OptimizerFile = "optimizer.safetensors";
    private const string StateFile = "trainer_state.json";
    private const string RngKey = "__rng_state__";

    /// <summary>The checkpoints folder of a run.</summary>
    public static string Root(string runDirectory) => Path.Combine(runDirectory, "checkpoints");

    /// <summary>Writes a checkpoint and deletes all but the newest <paramref name="keep"/>; returns its folder.
    /// <paramref name="vocabulary"/> is a vocabulary spec (<see cref="Vocabularies.Create"/>); a SentencePiece
    /// model file it names is copied in.</summary>
    public static string Save(string runDirectory, LanguageModel model, IOptimizer optimizer, Generator random, TrainerState state, RunConfig config, string vocabulary, int keep)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        return Save(runDirectory, model, optimizer.StateTensors(), optimizer.StepCount, random, state, config, vocabulary, keep);
    }

    /// <summary>
    /// Writes a checkpoint whose optimizer state is given as tensors keyed as <see cref="IOptimizer.StateTensors"/>
    /// names them (for example gathered from ZeRO-sharded ranks), and deletes all but the newest <paramref name="keep"/>.
    /// </summary>
    public static string Save(string runDirectory, LanguageModel model, IReadOnlyDictionary<string, Tensor> optimizerState, long optimizerStepCount, Generator random, TrainerState state, RunConfig config, string vocabulary, int keep)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizerState);
        ArgumentNullException.ThrowIfNull(state);
        using var scope = NewDisposeScope();
        string root = Root(runDirectory);
        Directory.CreateDirectory(root);
        string final = Path.Combine(root, Prefix + state.Step.ToString("D8", CultureInfo.InvariantCulture));
        string temp = $"{final}.tmp-{Environment.ProcessId}";
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);

        if (Vocabularies.ModelFile(vocabulary) is { } modelFile)
        {
            // The checkpoint carries its own tokenizer file so that inference needs nothing else.
            File.Copy(modelFile, Path.Combine(temp, Path.GetFileName(modelFile)));
            vocabulary = Vocabularies.WithModelFile(vocabulary, Path.GetFileName(modelFile));
        }
        ModelCheckpoint.Save(temp, model, new ModelManifest { Model = model.Options, Vocabulary = vocabulary, Step = state.Step });
        var tensors = new Dictionary<string, Tensor>(optimizerState) { [RngKey] = random.get_state() };
        SafeTensors.Save(Path.Combine(temp, OptimizerFile), tensors,
            new Dictionary<string, string> { ["optimizer_step_count"] = optimizerStepCount.ToString(CultureInfo.InvariantCulture) });
        File.WriteAllText(Path.Combine(temp, StateFile), JsonSerializer.Serialize(state, LoomJson.Options));
        File.WriteAllText(Path.Combine(temp, "config.json"), RunConfigLoader.ToJson(config));

        if (Directory.Exists(final)) Directory.Delete(final, recursive: true); // re-saving the same step
        Directory.Move(temp, final);
        foreach (var old in List(runDirectory).SkipLast(keep)) Directory.Delete(old, recursive: true);
        return final;
    }

    /// <summary>Complete checkpoint folders of a run, oldest first.</summary>
    public static IReadOnlyList<string> List(string runDirectory)
    {
        string root = Root(runDirectory);
        if (!Directory.Exists(root)) return Array.Empty<string>();
        return Directory.GetDirectories(root, Prefix + "*")
            .Where(d => !Path.GetFileName(d).Contains(".tmp", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// The checkpoint folder that <paramref name="path"/> names: itself when it is one, else the
    /// newest checkpoint of the run folder it names.
    /// </summary>
    /// <exception cref="InvalidDataException">No checkpoint is there.</exception>
    public static string Resolve(string path)
    {
        if (File.Exists(Path.Combine(path, ModelCheckpoint.ManifestFile))) return path;
        var all = List(path);
        if (all.Count == 0) throw new InvalidDataException($"no checkpoint found in {path}: pass a run folder that has checkpoints/step_* or a checkpoint folder");
        return all[^1];
    }

    /// <summary>
    /// Copies the model weights of a checkpoint (or of a run folder's newest one) into
    /// <paramref name="model"/>, for <see cref="TrainerOptions.InitFrom"/>; returns the checkpoint folder used.
    /// </summary>
    /// <param name="path">A checkpoint or run folder.</param>
    /// <param name="model">The freshly built model of the run.</param>
    /// <exception cref="InvalidDataException">
    /// No checkpoint is there, it holds a model of another architecture, or its weights do not fit the
    /// model's shape; the message names training.init_from.
    /// </exception>
    public static string InitialiseWeights(string path, LanguageModel model)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(model);
        string checkpoint;
        ModelManifest manifest;
        try
        {
            checkpoint = Resolve(path);
            manifest = ModelCheckpoint.ReadManifest(checkpoint);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"training.init_from = {path}: {e.Message}", e);
        }
        string family = model.Options.Architecture;
        if (manifest.Model.Architecture != family)
            throw new InvalidDataException($"training.init_from = {path} holds a {manifest.Model.Architecture} model but this run builds a {family} one: initialise from a {family} checkpoint, or set model.architecture = {manifest.Model.Architecture}");
        try
        {
            ModelCheckpoint.LoadWeights(model, Path.Combine(checkpoint, ModelCheckpoint.WeightsFile));
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"training.init_from = {path}: its model does not fit this run's ({e.Message}); use the checkpoint's model options (its model.json)", e);
        }
        return checkpoint;
    }

    /// <summary>Restores weights, optimizer state and the run's RNG from a checkpoint; returns the trainer state.</summary>
    /// <exception cref="InvalidDataException">A file is missing or corrupt.</exception>
    public static TrainerState Restore(string checkpoint, LanguageModel model, IOptimizer optimizer, Generator random)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        var manifest = ModelCheckpoint.ReadManifest(checkpoint);
        if (manifest.Model.Architecture != model.Options.Architecture)
            throw new InvalidDataException($"{checkpoint} holds a {manifest.Model.Architecture} model but this run builds a {model.Options.Architecture} one: resume with the run's own config (model.architecture = {manifest.Model.Architecture})");
        if (manifest.Model != model.Options)
            throw new InvalidDataException($"{checkpoint}: its model options differ from this run's; resume with the run's own config (drop --set model.* overrides)");
        ModelCheckpoint.LoadWeights(model, Path.Combine(checkpoint, ModelCheckpoint.WeightsFile));

        string optimizerPath = Path.Combine(checkpoint, OptimizerFile);
        if (!File.Exists(optimizerPath)) throw new InvalidDataException($"{checkpoint}: missing {OptimizerFile}");
        using (var scope = NewDisposeScope())
        {
            var tensors = SafeTensors.Load(optimizerPath, out var metadata);
            if (!tensors.Remove(RngKey, out var rng)) throw new InvalidDataException($"{optimizerPath}: missing the RNG state");
            if (!metadata.TryGetValue("optimizer_step_count", out var countText) || !long.TryParse(countText, CultureInfo.InvariantCulture, out long count))
                throw new InvalidDataException($"{optimizerPath}: missing optimizer_step_count metadata");
            optimizer.LoadState(tensors, count);
            random.set_state(rng);
        }

        string statePath = Path.Combine(checkpoint, StateFile);
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath), LoomJson.Options)
                   ?? throw new InvalidDataException($"{statePath}: empty trainer state");
        }
        catch (Exception e) when (e is JsonException or FileNotFoundException)
        {
            throw new InvalidDataException($"{statePath}: missing or corrupt trainer state ({e.Message.Split('\n')[0]})", e);
        }
    }
}
