using System.Text;
using System.Text.Json;
using Loom.Data;
using Loom.Inference.Constraints;

namespace Loom.Inference.Tests.Constraints;

public sealed class GrammarTests
{
    private static readonly TokenConstraintFactory Bytes = new(new ByteVocabulary());

    /// <summary>Whether the constraint accepts <paramref name="text"/> byte by byte and is then complete.</summary>
    private static bool Accepts(Grammar grammar, string text)
    {
        var constraint = Bytes.Create(grammar);
        var allowed = new bool[258];
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            constraint.FillAllowed(allowed);
            if (!allowed[b]) return false;
            constraint.Advance(b);
        }
        constraint.FillAllowed(allowed);
        Assert.Equal(constraint.IsComplete, allowed[ByteVocabulary.Eos]);
        return constraint.IsComplete;
    }

    [Fact]
    public void LiteralAcceptsExactlyItsText()
    {
        var g = Grammar.Literal("héllo");
        Assert.True(Accepts(g, "héllo"));
        Assert.False(Accepts(g, "héll"));
        Assert.False(Accepts(g, "hello"));
        var c = Bytes.Create(g);
        foreach (byte b in Encoding.UTF8.GetBytes("héllo")) c.Advance(b);
        Assert.True(c.IsComplete);
        Assert.False(c.CanContinue);
        var allowed = new bool[258];
        c.FillAllowed(allowed);
        Assert.Equal([ByteVocabulary.Eos], Enumerable.Range(0, 258).Where(i => allowed[i]));
    }

    [Fact]
    public void SequenceChoiceAndRepeatCompose()
    {
        var g = Grammar.Sequence(Grammar.Literal("["), Grammar.Repeat(Grammar.Choice(Grammar.Literal("a"), Grammar.Literal("bc")), 1, 3, Grammar.Literal(",")), Grammar.Literal("]"));
        foreach (string ok in (string[])["[a]", "[bc]", "[a,bc,a]", "[bc,bc]"]) Assert.True(Accepts(g, ok), ok);
        foreach (string bad in (string[])["[]", "[a,a,a,a]", "[a,]", "[ab]", "[b]", "a"]) Assert.False(Accepts(g, bad), bad);
        var unbounded = Grammar.Repeat(Grammar.Literal("x"), 2, int.MaxValue);
        Assert.False(Accepts(unbounded, "x"));
        Assert.True(Accepts(unbounded, "xx"));
        Assert.True(Accepts(unbounded, new string('x', 500)));
        Assert.True(Accepts(Grammar.Repeat(Grammar.Literal("x"), 0, 0), ""));
        Assert.Throws<ArgumentOutOfRangeException>(() => Grammar.Repeat(Grammar.Literal("x"), 3, 2));
        Assert.Throws<ArgumentException>(() => Grammar.Choice());
    }

    [Fact]
    public void JsonObjectAcceptsOnlyObjects()
    {
        var g = Grammar.JsonObject();
        foreach (string ok in (string[])["{}", "{\"a\":1}", "{\"a\": [1, -2.5e+3, true, null, \"x\\n\\u00e9\"], \"b\":{\"c\":{}}}", "{\"é\":\"日本\"}"])
            Assert.True(Accepts(g, ok), ok);
        foreach (string bad in (string[])["[]", "1", "\"s\"", "null", "{", "{\"a\"}", "{\"a\":01}", "{\"a\":1,}", "{ \"a\":1}", "{\"a\":  1}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\u0001\"}"])
            Assert.False(Accepts(g, bad), bad);
        // Invalid UTF-8 inside a string is never allowed.
        var c = Bytes.Create(g);
        foreach (byte b in "{\"a\":\""u8) c.Advance(b);
        var allowed = new bool[258];
        c.FillAllowed(allowed);
        Assert.False(allowed[0xC0]);
        Assert.False(allowed[0x80]);
        Assert.False(allowed[0xF5]);
        Assert.True(allowed[0xC3]);
    }

    [Fact]
    public void SchemaPropertiesComeInDeclaredOrderAndOptionalOnesMayBeSkipped()
    {
        var g = Grammar.JsonSchema(JsonDocument.Parse("""
            {"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["a","c"],"additionalProperties":false}
            """).RootElement);
        Assert.True(Accepts(g, "{\"a\":1,\"b\":\"x\",\"c\":true}"));
        Assert.True(Accepts(g, "{\"a\": -12, \"c\": false}"));
        Assert.False(Accepts(g, "{\"c\":true,\"a\":1}"));
        Assert.False(Accepts(g, "{\"a\":1}"));
        Assert.False(Accepts(g, "{\"a\":1.5,\"c\":true}"));
        Assert.False(Accepts(g, "{\"a\":1,\"c\":true,\"d\":1}"));
    }

    [Fact]
    public void SchemaEnumsArraysAndRecursionAreEnforced()
    {
        var g = Grammar.JsonSchema(JsonDocument.Parse("""
            {"$defs":{"node":{"type":"object","properties":{"v":{"enum":["x",2,null]},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"]}},
             "type":"array","items":{"$ref":"#/$defs/node"},"minItems":1}
            """).RootElement);
        Assert.True(Accepts(g, "[{\"v\":\"x\"}]"));
        Assert.True(Accepts(g, "[{\"v\":2,\"kids\":[{\"v\":null},{\"v\":\"x\",\"kids\":[]}]}, {\"v\":2}]"));
        Assert.False(Accepts(g, "[]"));
        Assert.False(Accepts(g, "[{\"v\":3}]"));
        Assert.False(Accepts(g, "[{\"v\":2,\"kids\":[{\"v\":2},{\"v\":2},{\"v\":2}]}]"));
        var lengths = Grammar.JsonSchema(JsonDocument.Parse("""{"type":["string","null"],"minLength":1,"maxLength":2}""").RootElement);
        Assert.True(Accepts(lengths, "\"é\\n\""));
        Assert.True(Accepts(lengths, "null"));
        Assert.False(Accepts(lengths, "\"\""));
        Assert.False(Accepts(lengths, "\"abc\""));
    }

    [Fact]
    public void NumbersHaveBoundedDigitsSoARandomModelEnds()
    {
        var g = Grammar.JsonSchema(JsonDocument.Parse("""{"type":"number"}""").RootElement);
        Assert.True(Accepts(g, "-0.5e-12"));
        Assert.True(Accepts(g, new string('9', GrammarCompiler.MaxIntegerDigits)));
        Assert.False(Accepts(g, new string('9', GrammarCompiler.MaxIntegerDigits + 1)));
        Assert.False(Accepts(g, "1e123"));
        Assert.False(Accepts(g, "01"));
        Assert.False(Accepts(g, "1."));
    }

    [Fact]
    public void AdvancingADisallowedTokenThrows()
    {
        var c = Bytes.Create(Grammar.Literal("ab"));
        Assert.Throws<InvalidOperationException>(() => c.Advance('b'));
        Assert.Throws<InvalidOperationException>(() => c.Advance(ByteVocabulary.Eos));
        Assert.Throws<InvalidOperationException>(() => c.Advance(ByteVocabulary.Pad));
    }

    [Fact]
    public void ASchemaWithNoFiniteValueIsRejected()
    {
        var e = Assert.Throws<SchemaException>(() => Grammar.JsonSchema(JsonDocument.Parse("""
            {"type":"object","properties":{"next":{"$ref":"#"}},"required":["next"]}
            """).RootElement));
        Assert.Equal("$", e.Path);
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"a+"}""", "$.pattern", "'pattern' is not supported")]
    [InlineData("""{"type":"object","properties":{"age":{"type":"integer","minimum":0}}}""", "$.properties.age.minimum", "'minimum' is not supported")]
    [InlineData("""{"type":"object","properties":{"a":{"format":"date"}}}""", "$.properties.a.format", "'format' is not supported")]
    [InlineData("""{"oneOf":[{"type":"string"}]}""", "$.oneOf", "'oneOf' is not supported")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "$.allOf", "'allOf' is not supported")]
    [InlineData("""{"not":{"type":"string"}}""", "$.not", "'not' is not supported")]
    [InlineData("""{"type":"object","patternProperties":{}}""", "$.patternProperties", "'patternProperties' is not supported")]
    [InlineData("""{"type":"array","items":{"type":"number","maximum":3}}""", "$.items.maximum", "'maximum' is not supported")]
    [InlineData("""{"anyOf":[{"type":"string"},{"type":"string","if":{}}]}""", "$.anyOf[1].if", "'if' is not supported")]
    [InlineData("""{"type":3}""", "$.type", "'type' must be")]
    [InlineData("""{"type":"strin"}""", "$.type", "unknown type 'strin'")]
    [InlineData("""{"type":"object","properties":[]}""", "$.properties", "'properties' must be an object")]
    [InlineData("""{"type":"object","properties":{"a":{}},"required":["b"]}""", "$.required", "required property 'b' is not in 'properties'")]
    [InlineData("""{"type":"object","properties":{"a":{}},"required":"a"}""", "$.required", "'required' must be an array")]
    [InlineData("""{"type":"object","additionalProperties":{"type":"string"}}""", "$.additionalProperties", "not supported")]
    [InlineData("""{"type":"array","minItems":-1}""", "$.minItems", "non-negative integer")]
    [InlineData("""{"type":"array","minItems":3,"maxItems":2}""", "$.minItems", "exceeds")]
    [InlineData("""{"enum":[]}""", "$.enum", "non-empty array")]
    [InlineData("""{"type":"string","enum":[1,2]}""", "$.enum", "no value is of the schema's type")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "$.$ref", "names no definition")]
    [InlineData("""{"$ref":"http://example.com/s.json"}""", "$.$ref", "is not supported")]
    [InlineData("""{"anyOf":[]}""", "$.anyOf", "non-empty array")]
    [InlineData("""{"anyOf":[{"type":"string"}],"type":"string"}""", "$.type", "beside 'anyOf'")]
    [InlineData("""{"properties":{"a":{"type":"object","properties":{"b":{"type":"strin"}}}}}""", "$.properties.a.properties.b.type", "unknown type")]
    [InlineData("""{"$defs":{"d":{"type":"string","uniqueItems":true}},"$ref":"#/$defs/d"}""", "$.$defs.d.uniqueItems", "'uniqueItems' is not supported")]
    [InlineData("""[1]""", "$", "must be an object or a boolean")]
    [InlineData("""{"type":"string","maxLength":100000}""", "$.maxLength", "bounds above")]
    public void SchemaErrorsNameTheirPath(string schema, string path, string message)
    {
        var e = Assert.Throws<SchemaException>(() => Grammar.JsonSchema(JsonDocument.Parse(schema).RootElement));
        Assert.Equal(path, e.Path);
        Assert.StartsWith(path + ": ", e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}

public sealed class TokenBudgetTests
{
    [Fact]
    public void ABudgetedConstraintEndsWithinItsTokens()
    {
        var factory = new TokenConstraintFactory(new ByteVocabulary());
        var rng = new Random(6);
        var grammars = new[]
        {
            Grammar.JsonObject(),
            Grammar.JsonSchema(JsonDocument.Parse("""{"type":"object","properties":{"name":{"type":"string"},"n":{"type":"array","items":{"type":"number"}}},"required":["name","n"]}""").RootElement),
        };
        var allowed = new bool[258];
        foreach (var grammar in grammars)
            foreach (int budget in (int[])[20, 40, 90])
                for (int draw = 0; draw < 30; draw++)
                {
                    var constraint = factory.Create(grammar, budget);
                    var ids = new List<int>();
                    while (true)
                    {
                        Assert.True(ids.Count < budget, $"no end within {budget} tokens: {factory.Vocabulary.Decode([.. ids])}");
                        constraint.FillAllowed(allowed);
                        var candidates = Enumerable.Range(0, 258).Where(i => allowed[i]).ToList();
                        int token = candidates[rng.Next(candidates.Count)]; // a random model: no steering of its own
                        if (token == ByteVocabulary.Eos) break;
                        constraint.Advance(token);
                        ids.Add(token);
                    }
                    using var doc = JsonDocument.Parse(factory.Vocabulary.Decode([.. ids]));
                    Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
                }
    }

    [Fact]
    public void ABudgetBelowTheShortestTextFallsBackToTheGrammar()
    {
        var factory = new TokenConstraintFactory(new ByteVocabulary());
        var constraint = factory.Create(Grammar.Literal("abc"), 2);
        var allowed = new bool[258];
        constraint.FillAllowed(allowed);
        Assert.Equal(['a'], Enumerable.Range(0, 258).Where(i => allowed[i]));
    }
}
