using Loom.Data.Evaluation;

namespace Loom.Data.Tests.Evaluation;

public class TextMetricsTests
{
    [Fact]
    public void Accuracy_counts_exact_string_matches_as_a_percentage()
    {
        var result = new Accuracy().Compute(["a", "b", "c", "d"], ["a", "B", "c", "x"]);
        Assert.Equal("accuracy", result.Name);
        Assert.Equal(50.0, result.Value, 12);
        Assert.Equal(200.0 / 3, Accuracy.Of([1, 2, 3], new[] { 1, 2, 4 }), 12);
        Assert.Equal(0.0, Accuracy.Of(Array.Empty<int>(), Array.Empty<int>()));
        Assert.Throws<ArgumentException>(() => new Accuracy().Compute(["a"], []));
    }

    [Theory]
    // SQuAD's normalize_answer: lowercase, drop punctuation, drop articles, collapse whitespace.
    [InlineData("The  Cat, sat!", "cat sat")]
    [InlineData("an apple a day", "apple day")]
    [InlineData("Theatre of the absurd", "theatre of absurd")]
    [InlineData("  \"Hello\",\tworld. ", "hello world")]
    [InlineData("the-end", "theend")]
    public void Squad_normalisation_matches_the_reference_script(string raw, string expected) =>
        Assert.Equal(expected, ExactMatch.NormalizeSquad(raw));

    [Fact]
    public void Exact_match_with_and_without_normalisation()
    {
        string[] targets = ["The Eiffel Tower", "Paris", "42"];
        string[] predictions = ["eiffel tower.", "paris", "forty-two"];
        Assert.Equal(200.0 / 3, new ExactMatch().Compute(targets, predictions).Value, 12);
        Assert.Equal(0.0, new ExactMatch(normalize: false).Compute(targets, predictions).Value);
        Assert.True(ExactMatch.Matches("Paris", "Paris", normalize: false));
    }

    [Theory]
    [InlineData("Hello, world!", new[] { "Hello", ",", "world", "!" })]
    // The apostrophe (0x27) lies outside 13a's symbol ranges, so contractions stay whole.
    [InlineData("It wasn't 3.5 or 1,000.", new[] { "It", "wasn't", "3.5", "or", "1,000", "." })]
    [InlineData("pages 10-20 &amp; more", new[] { "pages", "10", "-", "20", "&", "more" })]
    [InlineData("e-mail (draft)", new[] { "e-mail", "(", "draft", ")" })]
    public void Tokenizer_13a_splits_like_mteval(string text, string[] expected) =>
        Assert.Equal(expected, Bleu.Tokenize13a(text));

    [Fact]
    public void Bleu_matches_the_sacrebleu_readme_example_with_two_reference_streams()
    {
        // sacreBLEU README: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)
        string[] sys = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."];
        IReadOnlyList<string>[] refs =
        [
            ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
        ];
        var score = new Bleu().Corpus(sys, refs);
        Assert.Equal(17, score.HypothesisLength);
        Assert.Equal(18, score.ReferenceLength);
        // By hand (13a keeps "wasn't" whole, so the hypotheses have 6 + 4 + 7 tokens; closest reference
        // lengths 6 + 5 + 7): 1-grams 6 + 2 + 6 = 14 of 17 (sentence 2 matches only "It" and ".", sentence 3
        // misses "just"); 2-grams 5 + 0 + 2 = 7 of 5 + 3 + 6 = 14 (sentence 3: "The man", "man had");
        // 3-grams 4 + 0 + 1 = 5 of 4 + 2 + 5 = 11 ("The man had"); 4-grams 3 + 0 + 0 = 3 of 3 + 1 + 4 = 8.
        Assert.Equal([14L, 7, 5, 3], score.Matches);
        Assert.Equal([17L, 14, 11, 8], score.Totals);
        Assert.Equal(82.4, score.Precisions[0], 1);
        Assert.Equal(50.0, score.Precisions[1], 1);
        Assert.Equal(45.5, score.Precisions[2], 1);
        Assert.Equal(37.5, score.Precisions[3], 1);
        Assert.Equal(Math.Exp(1 - 18.0 / 17), score.BrevityPenalty, 12);
        Assert.Equal(0.943, score.BrevityPenalty, 3);
        double expected = Math.Exp(1 - 18.0 / 17) * Math.Pow(14.0 / 17 * 7 / 14 * 5 / 11 * 3 / 8, 0.25) * 100;
        Assert.Equal(expected, score.Score, 9);
        Assert.Equal(48.53, score.Score, 2);
    }

    [Fact]
    public void Bleu_hand_computed_single_reference_with_and_without_smoothing()
    {
        // hyp "the cat sat on a mat" vs ref "the cat sat on the mat": both 6 tokens, BP = 1.
        // 1-grams: the cat sat on a mat -> 5/6 ("a" unmatched); 2-grams: the-cat cat-sat sat-on -> 3/5;
        // 3-grams: the-cat-sat cat-sat-on -> 2/4; 4-grams: the-cat-sat-on -> 1/3.
        var score = new Bleu().Corpus(["the cat sat on a mat"], [["the cat sat on the mat"]]);
        Assert.Equal([5L, 3, 2, 1], score.Matches);
        Assert.Equal([6L, 5, 4, 3], score.Totals);
        Assert.Equal(1.0, score.BrevityPenalty);
        double expected = 100 * Math.Pow(5.0 / 6 * 3 / 5 * 2 / 4 * 1 / 3, 0.25);
        Assert.Equal(expected, score.Score, 9);
        Assert.Equal(53.7284965911771, score.Score, 9);

        // "the cat sat" vs "the cat is on the mat": no 3-gram match. BP = exp(1 - 6/3) = e^-1.
        // exp smoothing: p3 = 100 / (2 * 1); the 4-gram order has no hypothesis n-grams, so p4 = 0 and BLEU = 0
        // (sacreBLEU without effective order).
        var shortHyp = new Bleu().Corpus(["the cat sat"], [["the cat is on the mat"]]);
        Assert.Equal([2L, 1, 0, 0], shortHyp.Matches);
        Assert.Equal([3L, 2, 1, 0], shortHyp.Totals);
        Assert.Equal(50.0, shortHyp.Precisions[2], 12);
        Assert.Equal(0.0, shortHyp.Score, 9);

        // A 4-token hypothesis with no 3- or 4-gram matches: exp smoothing halves successively.
        // hyp "the cat ate fish" vs ref "the cat likes fish": 1-grams 3/4, 2-grams 1/3, 3-grams 0/2 -> 100/(2*2),
        // 4-grams 0/1 -> 100/(4*1).
        var smoothed = new Bleu().Corpus(["the cat ate fish"], [["the cat likes fish"]]);
        double[] expectedPrecisions = [75.0, 100.0 / 3, 25.0, 25.0];
        for (int k = 0; k < 4; k++) Assert.Equal(expectedPrecisions[k], smoothed.Precisions[k], 9);
        Assert.Equal(100 * Math.Pow(0.75 / 3 * 0.25 * 0.25, 0.25), smoothed.Score, 9);
        var unsmoothed = new Bleu(new BleuOptions { Smoothing = BleuSmoothing.None }).Corpus(["the cat ate fish"], [["the cat likes fish"]]);
        Assert.Equal(0.0, unsmoothed.Score, 9);
        Assert.Equal(0.0, unsmoothed.Precisions[2]);
    }

    [Fact]
    public void Bleu_metric_follows_seqio_tests()
    {
        // seqio metrics_test: identical strings score 100; empty predictions score 0.
        string[] same = ["this is a test", "this is another test"];
        Assert.Equal(100.0, new Bleu().Compute(same, same).Value, 9);
        Assert.Equal(0.0, new Bleu().Compute(["this is a string", "this is a string"], ["", ""]).Value, 9);
        Assert.Equal(100.0, new Bleu(new BleuOptions { Lowercase = true }).Compute(["The Cat sat on the mat"], ["the cat SAT on the mat"]).Value, 9);
        Assert.Throws<ArgumentException>(() => new BleuOptions { MaxOrder = 0 });
    }

    [Fact]
    public void RougeL_tokenizes_like_rouge_score()
    {
        Assert.Equal(["the", "quick", "brown", "dog", "jumps", "on", "the", "log"], RougeL.Tokenize("The quick brown dog jumps on the log."));
        Assert.Equal(["don", "t", "stop", "3", "14"], RougeL.Tokenize("Don't STOP: 3.14!"));
        Assert.Equal(["caf"], RougeL.Tokenize("Café"));
    }

    [Fact]
    public void RougeL_matches_hand_computed_lcs()
    {
        // rouge-score README example. Target has 9 tokens, prediction 8; their LCS is
        // "the quick brown jumps the" (5), so P = 5/8, R = 5/9, F = 2 * 5 / (8 + 9) = 10/17.
        var s = RougeL.Score("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log.");
        Assert.Equal(5.0 / 8, s.Precision, 12);
        Assert.Equal(5.0 / 9, s.Recall, 12);
        Assert.Equal(10.0 / 17, s.FMeasure, 12);
        Assert.Equal(4, RougeL.LcsLength("ABCBDAB".ToCharArray(), "BDCABA".ToCharArray()));
        Assert.Equal(new RougeScore(0, 0, 0), RougeL.Score("this is a string", ""));

        // The metric averages sentence F-measures and scales by 100, as seqio.
        var result = new RougeL().Compute(["this is a string", "The quick brown fox jumps over the lazy dog"],
            ["this is a string", "The quick brown dog jumps on the log."]);
        Assert.Equal(100 * (1 + 10.0 / 17) / 2, result.Value, 9);
    }

    [Fact]
    public void Perplexity_and_bits_per_byte_from_summed_nats()
    {
        // 100 tokens at a mean loss of ln 8 nats: perplexity 8; over 300 bytes that is 100 * 3 bits / 300 = 1 bit per byte.
        double nats = 100 * Math.Log(8);
        Assert.Equal(8.0, LanguageModelMetrics.Perplexity(nats, 100), 9);
        Assert.Equal(Math.Log(8), LanguageModelMetrics.NatsPerToken(nats, 100), 12);
        Assert.Equal(1.0, LanguageModelMetrics.BitsPerByte(nats, 300), 12);
        Assert.Equal(1.0, LanguageModelMetrics.Perplexity(0, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => LanguageModelMetrics.Perplexity(1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LanguageModelMetrics.BitsPerByte(double.NaN, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => LanguageModelMetrics.BitsPerByte(-1, 10));
    }
}
