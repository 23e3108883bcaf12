namespace Loom.Training.Evaluation;

/// <summary>Settings of <see cref="TaskEvaluator"/>; every value is checked when it is set.</summary>
public sealed record TaskEvaluationOptions
{
    /// <summary>Examples read from the start of each split; null (the default) reads them all.</summary>
    public int? MaxExamples
    {
        get;
        init => field = value is null or > 0 ? value : throw new ArgumentException($"max examples = {value} must be positive, or null for the whole split");
    }

    /// <summary>
    /// L: tokens per packed row when scoring, and the room a prompt and its prediction share when
    /// predicting; null (the default) uses the model's maximum sequence length. Longer examples lose
    /// input tokens from the front first, then target tokens from the end (counted in
    /// <see cref="ScoreResult.TruncatedExamples"/>).
    /// </summary>
    public int? SequenceLength
    {
        get;
        init => field = value is null or > 1 ? value : throw new ArgumentException($"sequence length = {value} must be at least 2, or null for the model's maximum");
    }

    /// <summary>Packed rows per forward pass when scoring (8 by default).</summary>
    public int BatchSize
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"batch size = {value} must be positive");
    } = 8;

    /// <summary>
    /// Most tokens generated per prediction, EOS not counted (64 by default); when predicting, it must leave room
    /// for a prompt: at most the sequence length − 2. Predictions stop sooner at the longest target of the
    /// examples evaluated (<see cref="TaskEvaluator"/>'s decode budget, seqio's targets feature length).
    /// </summary>
    public int MaxDecodeLength
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentException($"max decode length = {value} must be positive");
    } = 64;

    /// <summary>
    /// Whether to decode predictions and compute the task's metrics (true by default); only tasks with
    /// an "inputs" feature and at least one metric are predicted, the others are scored only.
    /// </summary>
    public bool Predict { get; init; } = true;

    /// <summary>How many predictions, from the first example on, the result keeps for logging (5 by default); metrics use all of them.</summary>
    public int PredictionsToKeep
    {
        get;
        init => field = value >= 0 ? value : throw new ArgumentException($"predictions to keep = {value} must be 0 or more");
    } = 5;

    /// <summary>Applied to every decoded prediction and target before the metrics see them; <see cref="Postprocessors.Trim"/> by default.</summary>
    public IPostprocessor Postprocessor
    {
        get;
        init => field = value ?? throw new ArgumentException("postprocessor must not be null; use Postprocessors.Identity for none");
    } = Postprocessors.Trim;

    /// <summary>Postprocessors for particular tasks, by task name, in place of <see cref="Postprocessor"/>; none by default.</summary>
    public IReadOnlyDictionary<string, IPostprocessor> TaskPostprocessors
    {
        get;
        init => field = value is not null && value.Values.All(p => p is not null) ? value
            : throw new ArgumentException("task postprocessors must be a dictionary without null entries; leave it empty for none");
    } = new Dictionary<string, IPostprocessor>(StringComparer.Ordinal);

    /// <summary>Seed handed to the tasks' pipelines (for random preprocessors); 0 by default.</summary>
    public ulong Seed { get; init; }

    /// <summary>The postprocessor for the task called <paramref name="taskName"/>.</summary>
    /// <param name="taskName">The task's registry name.</param>
    /// <returns>Its entry in <see cref="TaskPostprocessors"/>, else <see cref="Postprocessor"/>.</returns>
    public IPostprocessor PostprocessorFor(string taskName) =>
        TaskPostprocessors.TryGetValue(taskName, out var p) ? p : Postprocessor;
}
