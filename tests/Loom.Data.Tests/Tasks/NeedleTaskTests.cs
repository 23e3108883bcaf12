using Loom.Data.Tasks;

namespace Loom.Data.Tests.Tasks;

public class NeedleTaskTests
{
    private static readonly ByteVocabulary Bytes = new();

    [Theory]
    [InlineData(128, 0.0)]
    [InlineData(256, 0.25)]
    [InlineData(512, 0.5)]
    [InlineData(1000, 0.75)]
    [InlineData(4096, 1.0)]
    public void Places_the_needle_at_the_requested_depth_in_an_example_of_the_requested_length(int length, double depth)
    {
        var e = NeedleHaystack.Generate(seed: 7, index: 3, length, depth);

        int inputs = Bytes.Encode(e.Inputs).Length, targets = Bytes.Encode(e.Targets).Length;
        Assert.Equal(length, inputs + targets + 1); // + the EOS that ends the targets
        string needle = NeedleHaystack.Needle(e.Key, e.Value);
        Assert.Equal(e.NeedleOffset, e.Inputs.IndexOf(needle, StringComparison.Ordinal));
        int filler = e.Inputs.Length - needle.Length - NeedleHaystack.Question(e.Key).Length;
        Assert.Equal((int)Math.Round(depth * filler, MidpointRounding.AwayFromZero), e.NeedleOffset);
        Assert.EndsWith(NeedleHaystack.Question(e.Key), e.Inputs, StringComparison.Ordinal);
    }

    [Fact]
    public void The_answer_is_exactly_the_value_and_the_only_digits_and_capitals_are_the_needles_and_the_questions()
    {
        for (int i = 0; i < 50; i++)
        {
            var e = NeedleHaystack.Generate(seed: 1, index: i, 300, 0.5);
            Assert.Equal(e.Value, e.Targets);
            Assert.Matches("^[A-H][I-P][Q-X]$", e.Value); // each letter from its own range: one attention hop finds it
            Assert.Matches("^[1-9][0-9]{3}$", e.Key);
            string outside = e.Inputs.Replace(NeedleHaystack.Needle(e.Key, e.Value), "", StringComparison.Ordinal);
            Assert.Equal(2 * e.Key.Length, outside.Count(char.IsDigit)); // the key twice in the question
            Assert.DoesNotContain(outside, char.IsUpper);
            Assert.Equal(e.Value, string.Concat(e.Inputs.Where(char.IsUpper))); // the value's letters are the only capitals
        }
    }

    [Fact]
    public void Examples_are_a_pure_function_of_seed_and_index()
    {
        var a = NeedleHaystack.Generate(seed: 5, index: 11, 400, 0.3);
        var b = NeedleHaystack.Generate(seed: 5, index: 11, 400, 0.3);
        Assert.Equal(a, b);
        Assert.NotEqual(a.Inputs, NeedleHaystack.Generate(seed: 5, index: 12, 400, 0.3).Inputs);
        Assert.NotEqual(a.Inputs, NeedleHaystack.Generate(seed: 6, index: 11, 400, 0.3).Inputs);
        // The same (seed, index) at another depth moves only the needle: the filler around it is the same stream.
        var c = NeedleHaystack.Generate(seed: 5, index: 11, 400, 0.9);
        Assert.Equal(a.Inputs.Replace(NeedleHaystack.Needle(a.Key, a.Value), "", StringComparison.Ordinal),
            c.Inputs.Replace(NeedleHaystack.Needle(c.Key, c.Value), "", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(-0.01)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void A_depth_outside_zero_to_one_is_a_one_line_error(double depth)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => NeedleHaystack.Generate(0, 0, 256, depth));
        Assert.StartsWith("needle: depth = ", e.Message, StringComparison.Ordinal);
        Assert.Contains("must be in [0, 1]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_length_too_short_for_the_needle_and_question_is_a_one_line_error()
    {
        int shortest = NeedleHaystack.MinimumLength;
        Assert.Equal(shortest, NeedleHaystack.Generate(0, 0, shortest, 0.5).Length); // the shortest holds no filler
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => NeedleHaystack.Generate(0, 0, shortest - 1, 0.5));
        Assert.StartsWith($"needle: length = {shortest - 1} tokens is too short", e.Message, StringComparison.Ordinal);
        Assert.Contains($"use at least {shortest}", e.Message, StringComparison.Ordinal);
        Assert.Contains("needle.min_length", Assert.Throws<ArgumentException>(() => new NeedleTaskOptions { MinLength = 10 }.Validate()).Message);
        Assert.Contains("needle.max_length", Assert.Throws<ArgumentException>(() => new NeedleTaskOptions { MinLength = 200, MaxLength = 150 }.Validate()).Message);
    }

    [Fact]
    public void The_built_in_task_tokenizes_prompts_without_EOS_and_answers_with_it_within_the_lengths()
    {
        var task = TaskRegistry.WithBuiltIns(Bytes).GetTask("needle");
        var options = new NeedleTaskOptions();
        var train = task.GetDataset("train").Take(20).ToList();
        Assert.Equal(train, task.GetDataset("train").Take(20).ToList(), ExampleComparer.Instance);
        foreach (var e in train)
        {
            int[] inputs = e.Tokens["inputs"], targets = e.Tokens["targets"];
            Assert.NotEqual(Bytes.EosId, inputs[^1]);
            Assert.Equal(Bytes.EosId, targets[^1]);
            Assert.Equal(e.Texts["targets"], Bytes.Decode(targets[..^1]));
            Assert.InRange(inputs.Length + targets.Length, options.MinLength, options.MaxLength);
        }
        Assert.NotEqual(train[0].Texts["inputs"], task.GetDataset("validation").First().Texts["inputs"]);
        Assert.Equal(options.ValidationExamples, task.GetDataset("validation").Count());
    }

    private sealed class ExampleComparer : IEqualityComparer<Example>
    {
        public static readonly ExampleComparer Instance = new();

        public bool Equals(Example? x, Example? y) => x is not null && y is not null
            && x.Texts["inputs"] == y.Texts["inputs"] && x.Tokens["inputs"].SequenceEqual(y.Tokens["inputs"]) && x.Tokens["targets"].SequenceEqual(y.Tokens["targets"]);

        public int GetHashCode(Example obj) => obj.Texts["inputs"].GetHashCode(StringComparison.Ordinal);
    }
}
