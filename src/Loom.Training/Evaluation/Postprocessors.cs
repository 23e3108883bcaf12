namespace Loom.Training.Evaluation;

/// <summary>
/// Turns decoded model output (and the decoded target it is compared with) into the form a task's
/// metrics expect, as seqio's <c>postprocess_fn</c>: e.g. trimming whitespace or mapping a label.
/// </summary>
public interface IPostprocessor
{
    /// <summary>A short name for logs, such as <c>trim</c>.</summary>
    string Name { get; }

    /// <summary>Postprocesses one decoded text. Called once per prediction and once per target.</summary>
    /// <param name="text">The decoded text.</param>
    /// <returns>The text the metrics see.</returns>
    string Apply(string text);
}

/// <summary>Ready-made <see cref="IPostprocessor"/>s.</summary>
public static class Postprocessors
{
    /// <summary>Removes leading and trailing whitespace (the default).</summary>
    public static IPostprocessor Trim { get; } = new Function("trim", text => text.Trim());

    /// <summary>Leaves the text as it is.</summary>
    public static IPostprocessor Identity { get; } = new Function("identity", text => text);

    /// <summary>A postprocessor from a function.</summary>
    /// <param name="name">A short name for logs.</param>
    /// <param name="apply">The function; it must not return null.</param>
    /// <returns>The postprocessor.</returns>
    public static IPostprocessor Create(string name, Func<string, string> apply)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(apply);
        return new Function(name, apply);
    }

    /// <summary>Applies <paramref name="steps"/> in order.</summary>
    /// <param name="steps">The postprocessors, first applied first.</param>
    /// <returns>The chain; its name joins theirs with '+'.</returns>
    public static IPostprocessor Chain(params IPostprocessor[] steps)
    {
        ArgumentNullException.ThrowIfNull(steps);
        if (steps.Length == 0) throw new ArgumentException("a postprocessor chain needs at least one step; use Postprocessors.Identity for none", nameof(steps));
        foreach (var step in steps) ArgumentNullException.ThrowIfNull(step, nameof(steps));
        return new Function(string.Join("+", steps.Select(s => s.Name)), text => steps.Aggregate(text, (t, step) => step.Apply(t)));
    }

    private sealed class Function(string name, Func<string, string> apply) : IPostprocessor
    {
        public string Name => name;

        public string Apply(string text) =>
            apply(text ?? throw new ArgumentNullException(nameof(text)))
            ?? throw new InvalidOperationException($"postprocessor '{name}' returned null; return a string (empty for no answer)");
    }
}
