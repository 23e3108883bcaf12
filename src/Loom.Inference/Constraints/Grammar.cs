using System.Text.Json;
using Loom.Data;

namespace Loom.Inference.Constraints;

/// <summary>
/// A language of UTF-8 texts that a constrained output must belong to: a literal, any JSON value or object,
/// the JSON a schema describes, or a sequence, choice or repetition of those. A <see cref="TokenConstraintFactory"/>
/// turns it into a per-request <see cref="ITokenConstraint"/> over a vocabulary.
/// </summary>
public abstract record Grammar
{
    /// <summary>Exactly <paramref name="text"/>.</summary>
    public static Grammar Literal(string text) => throw new NotImplementedException("API stub: implemented on branch constraints");

    /// <summary>Any JSON object (OpenAI's <c>response_format: json_object</c>).</summary>
    public static Grammar JsonObject() => throw new NotImplementedException("API stub: implemented on branch constraints");

    /// <summary>The JSON values <paramref name="schema"/> accepts (strict mode: properties in declared order, no extra ones).</summary>
    /// <exception cref="SchemaException">The schema is malformed or uses a feature Loom does not support; the message names the field.</exception>
    public static Grammar JsonSchema(JsonElement schema) => throw new NotImplementedException("API stub: implemented on branch constraints");

    /// <summary>The parts, one after another.</summary>
    public static Grammar Sequence(params Grammar[] parts) => throw new NotImplementedException("API stub: implemented on branch constraints");

    /// <summary>Any one of the alternatives.</summary>
    public static Grammar Choice(params Grammar[] alternatives) => throw new NotImplementedException("API stub: implemented on branch constraints");

    /// <summary>Between <paramref name="min"/> and <paramref name="max"/> items, with <paramref name="separator"/> between them.</summary>
    public static Grammar Repeat(Grammar item, int min, int max, Grammar? separator = null) => throw new NotImplementedException("API stub: implemented on branch constraints");
}

/// <summary>A JSON schema Loom cannot enforce: malformed, or using an unsupported feature. <see cref="Path"/> names the field.</summary>
public sealed class SchemaException(string path, string message) : Exception($"{path}: {message}")
{
    /// <summary>The JSON path of the offending field, e.g. <c>$.properties.age.minimum</c>.</summary>
    public string Path { get; } = path;
}

/// <summary>
/// One request's constraint as it generates: which tokens keep the output a valid prefix of the grammar's
/// language, and the state after each accepted token. Not thread-safe; one per request.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>
    /// Sets <c>allowed[id]</c> true for every token id whose bytes keep the output a prefix of some text in the
    /// language, and for the end-of-sequence id when the output so far is a whole text of the language; false for
    /// all others. <paramref name="allowed"/> has the vocabulary's size.
    /// </summary>
    void FillAllowed(Span<bool> allowed);

    /// <summary>Accepts a generated token.</summary>
    /// <exception cref="InvalidOperationException">The token is not allowed in the current state.</exception>
    void Advance(int token);

    /// <summary>Whether the output so far is a whole text of the language (generation may stop here).</summary>
    bool IsComplete { get; }

    /// <summary>Whether any non-empty continuation is still allowed (false: the output must end now).</summary>
    bool CanContinue { get; }
}

/// <summary>Compiles grammars into token constraints over one vocabulary (byte, SentencePiece or tiktoken), caching what depends only on the vocabulary.</summary>
public sealed class TokenConstraintFactory
{
    /// <summary>Creates the factory of <paramref name="vocabulary"/>.</summary>
    public TokenConstraintFactory(IVocabulary vocabulary) => Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));

    /// <summary>The vocabulary.</summary>
    public IVocabulary Vocabulary { get; }

    /// <summary>A fresh constraint, at the start of <paramref name="grammar"/>'s language.</summary>
    public ITokenConstraint Create(Grammar grammar) => throw new NotImplementedException("API stub: implemented on branch constraints");
}
