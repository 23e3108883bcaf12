namespace Loom.Data.Tasks;

/// <summary>Counts of a task's preprocessed examples, for mixture rates by example count or size.</summary>
public static class TaskStatistics
{
    /// <summary>Runs <paramref name="split"/> of the task through its pipeline and counts examples and tokens (all token features).</summary>
    /// <exception cref="ArgumentException">The task has no such split.</exception>
    public static TaskSize Measure(DataTask task, string split = "train")
    {
        ArgumentNullException.ThrowIfNull(task);
        return Count(task.GetDataset(split));
    }

    /// <summary>Counts examples and tokens (all token features) of already preprocessed examples.</summary>
    public static TaskSize Count(IEnumerable<Example> preprocessed)
    {
        ArgumentNullException.ThrowIfNull(preprocessed);
        long examples = 0, tokens = 0;
        foreach (var e in preprocessed)
        {
            examples++;
            foreach (var feature in e.Tokens.Values) tokens += feature.Length;
        }
        return new TaskSize(examples, tokens);
    }
}
