using Loom.Data.Preprocessors;
using Loom.Data.Tasks;

namespace Loom.Data.Tests.Tasks;

public class SpanCorruptionTasksTests
{
    private static readonly SpanCorruptionOptions T5Noise = new() { NoiseDensity = 0.15, MeanNoiseSpanLength = 3 };

    [Fact]
    public void ChunkLengthFollowsT5RandomSpansHelper()
    {
        // T5's random_spans_helper(inputs_length=512, noise_density=0.15, mean_noise_span_length=3) = (568, 114).
        Assert.Equal(568, SpanCorruption.TokensLengthForInputs(512, T5Noise));
        Assert.Equal((512, 114), SpanCorruption.LengthsWithEos(568, T5Noise));
        int chunk = SpanCorruption.TokensLengthForInputs(TaskRegistry.SpanCorruptionInputsLength, T5Noise);
        Assert.Equal(284, chunk);
        Assert.True(SpanCorruption.LengthsWithEos(chunk, T5Noise).Inputs <= TaskRegistry.SpanCorruptionInputsLength);
        Assert.True(SpanCorruption.LengthsWithEos(chunk + 1, T5Noise).Inputs > TaskRegistry.SpanCorruptionInputsLength);
    }

    [Theory]
    [InlineData(TaskRegistry.AustenSpanCorruption)]
    [InlineData(TaskRegistry.KjvSpanCorruption)]
    [InlineData(TaskRegistry.BooksSpanCorruption)]
    public void WithoutSentinelsAskingForThemSaysWhichVocabularyToUse(string name)
    {
        var registry = TaskRegistry.WithBuiltIns(new ByteVocabulary());
        Assert.False(registry.HasTask(name));
        Assert.False(registry.HasMixture(name));
        Assert.DoesNotContain(name, registry.TaskNames);
        var error = name == TaskRegistry.BooksSpanCorruption
            ? Assert.Throws<KeyNotFoundException>(() => registry.GetMixture(name))
            : Assert.Throws<KeyNotFoundException>(() => registry.GetTask(name));
        Assert.Contains("data.vocabulary=byte+extra_ids=100", error.Message);
        Assert.Contains(name, error.Message);
        Assert.DoesNotContain('\n', error.Message);
        // A mixture naming one of them says the same.
        var mixture = new Mixture("mine", [new MixtureComponent(TaskRegistry.AustenSpanCorruption)]);
        Assert.Contains("data.vocabulary=byte+extra_ids=100", Assert.Throws<ArgumentException>(() => registry.Add(mixture)).Message);
    }

    [Fact]
    public void WithSentinelsTheTasksAndTheirMixtureAreRegistered()
    {
        var vocabulary = Vocabularies.Create("byte+extra_ids=100");
        var registry = TaskRegistry.WithBuiltIns(vocabulary);
        Assert.True(registry.HasTask(TaskRegistry.AustenSpanCorruption));
        Assert.True(registry.HasTask(TaskRegistry.KjvSpanCorruption));
        Assert.Equal([TaskRegistry.AustenSpanCorruption, TaskRegistry.KjvSpanCorruption], registry.TasksOf(TaskRegistry.BooksSpanCorruption));
        var task = registry.GetTask(TaskRegistry.AustenSpanCorruption);
        Assert.Equal(["inputs", "targets"], task.OutputFeatures.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(["train", "validation"], task.Source.Splits);
    }

    [SkippableFact]
    public void AustenSpanCorruptionCutsChunksCorruptsThemDeterministicallyAndLosesNothing()
    {
        var vocabulary = (ExtraIdsVocabulary)Vocabularies.Create("byte+extra_ids=100");
        var task = TaskRegistry.WithBuiltIns(vocabulary).GetTask(TaskRegistry.AustenSpanCorruption);
        List<Example> examples;
        try
        {
            examples = [.. task.GetDataset("validation", seed: 7).Take(30)];
        }
        catch (CorpusUnavailableException e)
        {
            Requires.Missing($"the Austen corpus is unavailable: {e.Message}");
            return;
        }
        int chunk = SpanCorruption.TokensLengthForInputs(TaskRegistry.SpanCorruptionInputsLength, T5Noise);
        // The chunks the pipeline corrupts: the split's documents, tokenized without EOS, concatenated and cut.
        int[] stream = [.. task.Source.Read("validation").SelectMany(e => vocabulary.Encode(e.Text("text")))];
        for (int i = 0; i < examples.Count; i++)
        {
            int[] inputs = examples[i].Tokens["inputs"], targets = examples[i].Tokens["targets"];
            Assert.Equal(vocabulary.EosId, inputs[^1]);
            Assert.Equal(vocabulary.EosId, targets[^1]);
            Assert.Equal(SpanCorruption.LengthsWithEos(chunk, T5Noise), (inputs.Length, targets.Length));
            Assert.True(inputs.Length <= TaskRegistry.SpanCorruptionInputsLength);
            Assert.Equal(vocabulary.SentinelId(0), targets[0]);
            Assert.Equal(stream.AsSpan(i * chunk, chunk).ToArray(), Uncorrupt(vocabulary, inputs[..^1], targets[..^1]));
        }
        // Deterministic per (seed, example index); another seed corrupts other spans of the same chunks.
        var again = task.GetDataset("validation", seed: 7).Take(30).ToList();
        Assert.All(Enumerable.Range(0, examples.Count), i => Assert.Equal(examples[i].Tokens["inputs"], again[i].Tokens["inputs"]));
        var other = task.GetDataset("validation", seed: 8).Take(30).ToList();
        Assert.Contains(Enumerable.Range(0, examples.Count), i => !examples[i].Tokens["inputs"].SequenceEqual(other[i].Tokens["inputs"]));
    }

    /// <summary>Puts each sentinel's span from the targets back into the inputs.</summary>
    private static int[] Uncorrupt(ExtraIdsVocabulary vocabulary, int[] inputs, int[] targets)
    {
        var spans = new Dictionary<int, List<int>>();
        List<int>? current = null;
        foreach (int id in targets)
        {
            if (vocabulary.IsSentinel(id, out int k)) spans[k] = current = [];
            else current!.Add(id);
        }
        var result = new List<int>();
        foreach (int id in inputs)
        {
            if (vocabulary.IsSentinel(id, out int k)) result.AddRange(spans[k]);
            else result.Add(id);
        }
        return [.. result];
    }
}
