using System.Globalization;
using System.Text.Json;
using Loom.Core;
using Loom.Data;
using Loom.Distributed;
using Loom.Models;
using Loom.Models.Interop;
using Loom.Models.Parallelism;
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

    /// <summary>fp16: the dynamic loss scale after the last update; null for other precisions.</summary>
    public double? LossScale { get; init; }

    /// <summary>fp16: updates skipped so far because their gradients overflowed.</summary>
    public long SkippedUpdates { get; init; }
}

/// <summary>
/// Checkpoint folders of a run: <c>checkpoints/step_NNNNNNNN/</c> with the model (model.safetensors,
/// model.json), the optimizer state and the run's RNG (optimizer.safetensors), the trainer state
/// (trainer_state.json) and the resolved config. A folder is written under a temporary name and
/// renamed when complete, so a crash never leaves a checkpoint that looks whole. A tensor-parallel run writes
/// one model and one optimizer file per model-axis rank instead, an index (<see cref="CheckpointIndex"/>) and,
/// last, a commit marker (see <see cref="SaveSharded"/>); either form loads on any mesh.
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

        // The checkpoint carries its own tokenizer files so that inference needs nothing else.
        vocabulary = Vocabularies.CopyModelFiles(vocabulary, temp);
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

    /// <summary>
    /// Writes a checkpoint of a tensor-parallel model; collective over every rank of <paramref name="mesh"/>. The ranks
    /// of the first data replica each write their part of the model and of the optimizer state into a shared temporary
    /// folder; after a barrier rank 0 writes the manifest, the trainer state, the index and, last, the commit marker,
    /// then renames the folder into place and deletes all but the newest <paramref name="keep"/>. A rank that dies before
    /// the barrier leaves no committed folder, so the previous checkpoint stays the newest loadable one.
    /// </summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="model">This rank's part of the model.</param>
    /// <param name="optimizerState">This rank's optimizer state, keyed "parameter.slot".</param>
    /// <param name="optimizerStepCount">The optimizer's update count.</param>
    /// <param name="random">The run's generator (its state is saved).</param>
    /// <param name="state">The trainer's progress.</param>
    /// <param name="config">The run's config.</param>
    /// <param name="vocabulary">The vocabulary spec.</param>
    /// <param name="keep">Checkpoints to keep.</param>
    /// <param name="mesh">The job's mesh.</param>
    /// <param name="onPartWritten">Called on each writing rank once its files are on disk, before the barrier (for observers and tests).</param>
    /// <returns>The checkpoint folder (on every rank).</returns>
    public static string SaveSharded(string runDirectory, LanguageModel model, IReadOnlyDictionary<string, Tensor> optimizerState, long optimizerStepCount, Generator random,
        TrainerState state, RunConfig config, string vocabulary, int keep, DeviceMesh mesh, Action<string>? onPartWritten = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizerState);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(mesh);
        using var scope = NewDisposeScope();
        var layout = model.TensorParallel;
        string root = Root(runDirectory);
        string final = Path.Combine(root, Prefix + state.Step.ToString("D8", CultureInfo.InvariantCulture));
        string temp = final + ".tmp"; // one name for every rank: they all write into it
        bool primary = mesh.World.Rank == 0;
        if (primary)
        {
            Directory.CreateDirectory(root);
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true); // left by a job that died mid-checkpoint
            Directory.CreateDirectory(temp);
        }
        mesh.World.Barrier();

        IReadOnlyDictionary<string, ShardedTensorEntry>? modelEntries = null, optimizerEntries = null;
        if (mesh.DataIndex == 0)
        {
            var weights = model.state_dict();
            modelEntries = ShardedTensors.Write(temp, "model", weights, layout.ShardedDim, layout.Part, layout.Parts,
                new Dictionary<string, string> { ["format"] = "pt", ["loom_architecture"] = model.Options.Architecture });
            var tensors = new Dictionary<string, Tensor>(optimizerState, StringComparer.Ordinal) { [RngKey] = random.get_state() };
            optimizerEntries = ShardedTensors.Write(temp, "optimizer", tensors, key => OptimizerStateSplitDim(layout, weights, key, tensors[key].shape), layout.Part, layout.Parts,
                new Dictionary<string, string> { ["optimizer_step_count"] = optimizerStepCount.ToString(CultureInfo.InvariantCulture) });
            onPartWritten?.Invoke(temp);
        }
        mesh.World.Barrier(); // every part is on disk

        if (primary)
        {
            vocabulary = Vocabularies.CopyModelFiles(vocabulary, temp);
            var manifest = new ModelManifest { Model = model.Options, Vocabulary = vocabulary, Step = state.Step };
            File.WriteAllText(Path.Combine(temp, ModelCheckpoint.ManifestFile), JsonSerializer.Serialize(manifest with { Architecture = manifest.Model.Architecture }, LoomJson.Options));
            File.WriteAllText(Path.Combine(temp, StateFile), JsonSerializer.Serialize(state, LoomJson.Options));
            File.WriteAllText(Path.Combine(temp, "config.json"), RunConfigLoader.ToJson(config));
            new CheckpointIndex { MeshData = mesh.Data, MeshModel = mesh.Model, Model = modelEntries!, Optimizer = optimizerEntries! }.Write(temp);
            File.WriteAllText(Path.Combine(temp, CheckpointIndex.CommitMarker), state.Step.ToString(CultureInfo.InvariantCulture)); // last: the checkpoint is whole
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true); // re-saving the same step
            Directory.Move(temp, final);
            foreach (var old in List(runDirectory).SkipLast(keep)) Directory.Delete(old, recursive: true);
        }
        mesh.World.Barrier(); // committed before any rank goes on
        return final;
    }

    /// <summary>
    /// The dimension along which an optimizer state tensor (keyed "parameter.slot") is split: its parameter's, when the
    /// state has the parameter's shape (AdamW's moments); null for everything else (scalars, the RNG).
    /// </summary>
    private static int? OptimizerStateSplitDim(TensorParallelLayout layout, IReadOnlyDictionary<string, Tensor> parameters, string key, long[] shape)
    {
        int dot = key.LastIndexOf('.');
        if (dot <= 0) return null;
        string parameter = key[..dot];
        return layout.ShardedDim(parameter) is int dim && parameters.TryGetValue(parameter, out var p) && p.shape.SequenceEqual(shape) ? dim : null;
    }

    /// <summary>Complete checkpoint folders of a run, oldest first (a sharded one only once committed).</summary>
    public static IReadOnlyList<string> List(string runDirectory)
    {
        string root = Root(runDirectory);
        if (!Directory.Exists(root)) return Array.Empty<string>();
        return Directory.GetDirectories(root, Prefix + "*")
            .Where(d => !Path.GetFileName(d).Contains(".tmp", StringComparison.Ordinal) && CheckpointIndex.IsCommitted(d))
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>
    /// The checkpoint folder that <paramref name="path"/> names: itself when it is one (a Hugging Face model folder,
    /// written <c>hf:DIR</c> or plainly, counts as one), else the newest checkpoint of the run folder it names.
    /// </summary>
    /// <exception cref="InvalidDataException">No checkpoint is there.</exception>
    public static string Resolve(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.StartsWith(HuggingFaceModels.SpecPrefix, StringComparison.OrdinalIgnoreCase))
        {
            string folder = path[HuggingFaceModels.SpecPrefix.Length..];
            return HuggingFaceModels.IsFolder(folder) ? folder
                : throw new InvalidDataException($"{path}: {folder} is not a Hugging Face model folder (it needs config.json and model.safetensors or its shards)");
        }
        if (File.Exists(Path.Combine(path, ModelCheckpoint.ManifestFile)) || HuggingFaceModels.IsFolder(path)) return path;
        var all = List(path);
        if (all.Count == 0) throw new InvalidDataException($"no checkpoint found in {path}: pass a run folder that has checkpoints/step_* or a checkpoint folder");
        return all[^1];
    }

    /// <summary>
    /// Copies the model weights of a checkpoint (or of a run folder's newest one) into
    /// <paramref name="model"/>, for <see cref="TrainerOptions.InitFrom"/>; returns the checkpoint folder used (absolute; <c>hf:</c> and
    /// the absolute folder for a Hugging Face one). A LoRA checkpoint gives its base's weights with the adapter merged in.
    /// </summary>
    /// <param name="path">A checkpoint or run folder, or <c>hf:DIR</c> (a Hugging Face model folder).</param>
    /// <param name="model">The freshly built model of the run.</param>
    /// <exception cref="InvalidDataException">
    /// No checkpoint is there, it holds a model of another architecture, or its weights do not fit the
    /// model's shape; the message names training.init_from.
    /// </exception>
    public static string InitialiseWeights(string path, LanguageModel model)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(model);
        if (path.StartsWith(ModelCheckpoint.HuggingFacePrefix, StringComparison.Ordinal))
        {
            string folder = Path.GetFullPath(path[ModelCheckpoint.HuggingFacePrefix.Length..]);
            try
            {
                ModelCheckpoint.LoadCheckpointWeights(model, ModelCheckpoint.HuggingFacePrefix + folder);
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"training.init_from = {path}: {e.Message}; the run's model options must be the Hugging Face model's (pass --init-from without --preset to take them)", e);
            }
            return ModelCheckpoint.HuggingFacePrefix + folder;
        }
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
            ModelCheckpoint.LoadCheckpointWeights(model, checkpoint);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"training.init_from = {path}: its model does not fit this run's ({e.Message}); use the checkpoint's model options (its model.json)", e);
        }
        return Path.GetFullPath(checkpoint);
    }

    private static long[] WholeShape(TensorParallelLayout layout, string parameter, long[] local)
    {
        var shape = local.ToArray();
        if (layout.ShardedDim(parameter) is int dim) shape[dim] *= layout.Parts;
        return shape;
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
        ModelCheckpoint.LoadCheckpointWeights(model, checkpoint);

        string optimizerPath = Path.Combine(checkpoint, OptimizerFile);
        bool sharded = CheckpointIndex.IsSharded(checkpoint);
        if (!sharded && !File.Exists(optimizerPath)) throw new InvalidDataException($"{checkpoint}: missing {OptimizerFile}");
        using (var scope = NewDisposeScope())
        {
            IReadOnlyDictionary<string, string> metadata;
            var tensors = sharded
                ? ShardedTensors.ReadWhole(checkpoint, CheckpointIndex.Read(checkpoint).Optimizer, out metadata)
                : SafeTensors.Load(optimizerPath, out metadata);
            // Whole state tensors (from any mesh) cut to this rank's part of the model.
            var layout = model.TensorParallel;
            if (layout.Parts > 1)
            {
                var local = model.state_dict();
                var whole = local.ToDictionary(p => p.Key, p => WholeShape(layout, p.Key, p.Value.shape), StringComparer.Ordinal);
                foreach (var key in tensors.Keys.ToList())
                {
                    int dot = key.LastIndexOf('.');
                    string parameter = dot > 0 ? key[..dot] : key;
                    if (layout.ShardedDim(parameter) is int dim && whole.TryGetValue(parameter, out var shape) && shape.SequenceEqual(tensors[key].shape))
                        tensors[key] = ShardedTensors.Part(tensors[key], dim, layout.Part, layout.Parts);
                }
            }
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
