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
    public static Grammar Literal(string text) =>
        new LiteralGrammar(System.Text.Encoding.UTF8.GetBytes(text ?? throw new ArgumentNullException(nameof(text))));

    /// <summary>Any JSON object (OpenAI's <c>response_format: json_object</c>).</summary>
    public static Grammar JsonObject() => new JsonObjectGrammar();

    /// <summary>The JSON values <paramref name="schema"/> accepts (strict mode: properties in declared order, no extra ones).</summary>
    /// <exception cref="SchemaException">The schema is malformed or uses a feature Loom does not support; the message names the field.</exception>
    public static Grammar JsonSchema(JsonElement schema)
    {
        var copy = schema.Clone();
        SchemaCompiler.Check(copy);
        return new JsonSchemaGrammar(copy);
    }

    /// <summary>The parts, one after another.</summary>
    public static Grammar Sequence(params Grammar[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Any(p => p is null)) throw new ArgumentException("a sequence part is null", nameof(parts));
        return new SequenceGrammar([.. parts]);
    }

    /// <summary>Any one of the alternatives.</summary>
    public static Grammar Choice(params Grammar[] alternatives)
    {
        ArgumentNullException.ThrowIfNull(alternatives);
        if (alternatives.Length == 0) throw new ArgumentException("a choice needs at least one alternative", nameof(alternatives));
        if (alternatives.Any(p => p is null)) throw new ArgumentException("a choice alternative is null", nameof(alternatives));
        return new ChoiceGrammar([.. alternatives]);
    }

    /// <summary>Between <paramref name="min"/> and <paramref name="max"/> items, with <paramref name="separator"/> between them.</summary>
    /// <remarks><paramref name="max"/> may be <see cref="int.MaxValue"/> for no upper bound; a finite one is unrolled, so at most <see cref="MaxRepeatBound"/>.</remarks>
    public static Grammar Repeat(Grammar item, int min, int max, Grammar? separator = null)
    {
        ArgumentNullException.ThrowIfNull(item);
        ArgumentOutOfRangeException.ThrowIfNegative(min);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, min);
        if (max != int.MaxValue && max > MaxRepeatBound)
            throw new ArgumentOutOfRangeException(nameof(max), max, $"a finite repeat bound must be at most {MaxRepeatBound} (or int.MaxValue for none)");
        if (max == 0) return new SequenceGrammar([]);
        return new RepeatGrammar(item, min, max, separator);
    }

    /// <summary>The largest finite <c>max</c> of <see cref="Repeat"/>.</summary>
    public const int MaxRepeatBound = 100_000;

    /// <summary>Emits the grammar's automaton fragment, which goes on to <paramref name="next"/>; returns its first node.</summary>
    internal abstract int Emit(GrammarCompiler compiler, int next);
}

internal sealed record LiteralGrammar(byte[] Bytes) : Grammar
{
    internal override int Emit(GrammarCompiler compiler, int next) => compiler.Builder.Bytes(Bytes, next);
}

internal sealed record JsonObjectGrammar : Grammar
{
    internal override int Emit(GrammarCompiler compiler, int next) => compiler.AnyObject(next);
}

internal sealed record JsonSchemaGrammar(JsonElement Schema) : Grammar
{
    internal override int Emit(GrammarCompiler compiler, int next) => new SchemaCompiler(compiler, Schema).Emit(Schema, "$", next);
}

internal sealed record SequenceGrammar(Grammar[] Parts) : Grammar
{
    internal override int Emit(GrammarCompiler compiler, int next)
    {
        for (int i = Parts.Length - 1; i >= 0; i--) next = Parts[i].Emit(compiler, next);
        return next;
    }
}

internal sealed record ChoiceGrammar(Grammar[] Alternatives) : Grammar
{
    internal override int Emit(GrammarCompiler compiler, int next) => compiler.Builder.Split([.. Alternatives.Select(a => a.Emit(compiler, next))]);
}

internal sealed record RepeatGrammar(Grammar Item, int Min, int Max, Grammar? Separator) : Grammar
{
    internal override int Emit(GrammarCompiler compiler, int next)
    {
        Func<int, int>? separator = Separator is null ? null : to => Separator.Emit(compiler, to);
        return compiler.Repeat(compiler.RuleOf(Item), Min, Max, separator, next);
    }
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

