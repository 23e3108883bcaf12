using System.Text.Json;
using Loom.Data;
using Loom.Data.Tests;
using Loom.Inference.Constraints;

namespace Loom.Inference.Tests.Constraints;

/// <summary>
/// Random schemas × random constrained draws: every draw decodes (with the vocabulary's own decoder) to JSON that parses
/// and that an independent validator accepts, for each kind of vocabulary.
/// </summary>
public sealed class RandomSchemaTests
{
    private static readonly Lazy<TokenConstraintFactory> Tiktoken = new(() => new TokenConstraintFactory(new TiktokenVocabulary("cl100k_base")));

    internal static SentencePieceVocabulary SentencePiece(string name) =>
        new(Path.Combine(RepositoryRoot.Find(), "tests", "Loom.Data.Tests", "Fixtures", name));

    private static void Run(TokenConstraintFactory factory, int schemas, int drawsPerSchema, int freeSteps, int seed)
    {
        var generator = new RandomSchemas(seed);
        var rng = new Random(seed);
        for (int i = 0; i < schemas; i++)
        {
            string schemaText = generator.Next().ToJsonString();
            using var schema = JsonDocument.Parse(schemaText);
            var grammar = Grammar.JsonSchema(schema.RootElement);
            for (int d = 0; d < drawsPerSchema; d++)
            {
                int[] ids = ConstrainedSampling.Draw(factory, grammar, rng, freeSteps);
                string text = factory.Vocabulary.Decode(ids);
                JsonDocument output;
                try
                {
                    output = JsonDocument.Parse(text);
                }
                catch (JsonException e)
                {
                    throw new Xunit.Sdk.XunitException($"schema {i} {schemaText}\noutput {text}\ndoes not parse: {e.Message}");
                }
                using (output)
                    if (SchemaValidator.Validate(output.RootElement, schema.RootElement) is { } error)
                        throw new Xunit.Sdk.XunitException($"schema {i} {schemaText}\noutput {text}\nis invalid: {error}\nids {string.Join(" ", ids)}");
            }
        }
    }

    [Fact]
    public void ByteVocabularyDrawsAlwaysValidate() => Run(new TokenConstraintFactory(new ByteVocabulary()), 1000, 2, 40, 1);

    [Fact]
    public void SentencePieceDrawsAlwaysValidate() => Run(new TokenConstraintFactory(SentencePiece("bpe.model")), 1000, 1, 20, 2);

    [Fact]
    public void TiktokenDrawsAlwaysValidate() => Run(Tiktoken.Value, 1000, 1, 12, 3);

    [SkippableTheory]
    [InlineData(NpmTokenizerFiles.Gpt2Package)]
    [InlineData(NpmTokenizerFiles.MistralPackage)]
    public void HuggingFaceDrawsAlwaysValidate(string package) =>
        Run(new TokenConstraintFactory(new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(package))), 300, 1, 12, 7);

    [Fact]
    public void JsonObjectDrawsAreObjects()
    {
        var rng = new Random(4);
        foreach (var factory in (TokenConstraintFactory[])[new(new ByteVocabulary()), Tiktoken.Value])
            for (int i = 0; i < 50; i++)
            {
                string text = factory.Vocabulary.Decode(ConstrainedSampling.Draw(factory, Grammar.JsonObject(), rng, 30));
                using var doc = JsonDocument.Parse(text);
                Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
            }
    }

    [Fact]
    public void TrieMasksAgreeWithTheReference()
    {
        var rng = new Random(5);
        var generator = new RandomSchemas(5);
        foreach (var factory in (TokenConstraintFactory[])[new(new ByteVocabulary()), new(SentencePiece("bpe.model")), new(new PieceVocabulary([.. Enumerable.Range(32, 95).Select(c => ((char)c).ToString()), "ü", "ï", "日", "本", "é", "\":", ",\"", "true", "null", "12", "\"}"]))])
            for (int i = 0; i < 30; i++)
            {
                using var schema = JsonDocument.Parse(generator.Next().ToJsonString());
                ConstrainedSampling.Draw(factory, Grammar.JsonSchema(schema.RootElement), rng, 10, checkReference: true);
            }
        var tiktoken = Tiktoken.Value;
        for (int i = 0; i < 3; i++)
        {
            using var schema = JsonDocument.Parse(generator.Next().ToJsonString());
            ConstrainedSampling.Draw(tiktoken, Grammar.JsonSchema(schema.RootElement), rng, 3, checkReference: true);
        }
    }

    [Fact]
    public void TiktokenTokenBytesMatchTheDecoder()
    {
        var vocabulary = (TiktokenVocabulary)Tiktoken.Value.Vocabulary;
        int whole = 0;
        for (int id = 0; id < vocabulary.Size; id++)
        {
            if (vocabulary.TokenBytes(id) is not { } bytes) continue;
            string text = vocabulary.Decode([id]);
            if (text.Contains('\uFFFD', StringComparison.Ordinal)) continue;
            Assert.Equal(text, System.Text.Encoding.UTF8.GetString(bytes));
            whole++;
        }
        Assert.True(whole > 90_000, $"{whole} whole tokens");
        Assert.Null(vocabulary.TokenBytes(vocabulary.EosId));
    }
}
