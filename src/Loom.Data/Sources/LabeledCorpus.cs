namespace Loom.Data.Sources;

/// <summary>One example of a text-classification corpus.</summary>
/// <param name="Id">A stable, file-safe identifier, unique in the corpus.</param>
/// <param name="Text">The input text.</param>
/// <param name="Label">The class, one of the corpus's <see cref="LabeledCorpus.Labels"/>.</param>
public sealed record LabeledExample(string Id, string Text, string Label);

/// <summary>A text-classification corpus with fixed train, validation and test splits.</summary>
/// <param name="Name">A short name for logs, such as <c>spam_assassin</c>.</param>
/// <param name="Labels">The classes, in a fixed order.</param>
/// <param name="Train">The training examples, in a fixed order.</param>
/// <param name="Validation">The validation examples, in a fixed order.</param>
/// <param name="Test">The test examples, in a fixed order.</param>
public sealed record LabeledCorpus(
    string Name,
    IReadOnlyList<string> Labels,
    IReadOnlyList<LabeledExample> Train,
    IReadOnlyList<LabeledExample> Validation,
    IReadOnlyList<LabeledExample> Test);
