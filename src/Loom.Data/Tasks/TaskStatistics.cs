namespace Loom.Data.Tasks;

/// <summary>Counts of a task's preprocessed examples, for mixture rates by example count or size.</summary>
public static class TaskStatistics
{
    /// <summary>Runs <paramref name="split"/> of the task through its pipeline and counts examples and tokens (all token features).</summary>
    /// <exception cref="ArgumentException">The task has no such split.</exception>
    public static TaskSize Measure(DataTask task, string split = "train")
    {
        ArgumentNullException.ThrowIfNull(task);
        long examples = 0, tokens = 0;
        foreach (var e in task.GetDataset(split))
        {
            examples++;
            foreach (var feature in e.Tokens.Values) tokens += feature.Length;
        }
        return new TaskSize(examples, tokens);
    }
}
