namespace Loom.Data;

/// <summary>A text corpus split into training and held-out documents.</summary>
/// <param name="Name">A short name for logs, such as <c>austen</c> or a file name.</param>
/// <param name="Train">The training documents, in a fixed order.</param>
/// <param name="Validation">The held-out documents, in a fixed order; may be empty.</param>
public sealed record TextCorpus(string Name, IReadOnlyList<string> Train, IReadOnlyList<string> Validation);
