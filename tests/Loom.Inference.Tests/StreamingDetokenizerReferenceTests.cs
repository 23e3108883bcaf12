using System.Text;
using Loom.Data;
using Loom.Inference;

namespace Loom.Inference.Tests;

/// <summary>The incremental <see cref="StreamingDetokenizer"/> against the reference that decodes all ids on every push.</summary>
public class StreamingDetokenizerReferenceTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomBytesGiveTheReferenceDeltas(int seed)
    {
        var random = new Random(seed);
        var vocabulary = new ByteVocabulary();
        // Mostly valid UTF-8 of 1-4 bytes, with stray continuation and lead bytes that never complete.
        var text = string.Concat(Enumerable.Range(0, 300).Select(_ => random.Next(6) switch
        {
            0 => "é", 1 => "😀", 2 => "中", 3 => " ", _ => ((char)random.Next('a', 'z' + 1)).ToString(),
        }));
        var bytes = Encoding.UTF8.GetBytes(text).ToList();
        for (int i = 0; i < 20; i++) bytes.Insert(random.Next(bytes.Count), (byte)random.Next(0x80, 0x100));
        var ids = bytes.Select(b => (int)b).ToArray(); // a byte is its own id
        int[] prompt = ids[..17];

        foreach (var promptIds in new[] { Array.Empty<int>(), prompt })
        {
            var fast = new StreamingDetokenizer(vocabulary, promptIds);
            var reference = new ReferenceStreamingDetokenizer(vocabulary, promptIds);
            foreach (int id in ids[promptIds.Length..]) Assert.Equal(reference.Push(id), fast.Push(id));
            Assert.Equal(reference.Flush(), fast.Flush());
        }
    }

    [Fact]
    public void SentencePieceGivesTheReferenceDeltas()
    {
        string repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "Loom.slnx"))) repo = Path.GetDirectoryName(repo)!;
        var vocabulary = new SentencePieceVocabulary(Path.Combine(repo, "tests", "Loom.Data.Tests", "Fixtures", "unigram.model"));
        int[] ids = vocabulary.Encode("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.");
        foreach (int cut in new[] { 0, 1, 5 })
        {
            var fast = new StreamingDetokenizer(vocabulary, ids[..cut]);
            var reference = new ReferenceStreamingDetokenizer(vocabulary, ids[..cut]);
            foreach (int id in ids[cut..]) Assert.Equal(reference.Push(id), fast.Push(id));
            Assert.Equal(reference.Flush(), fast.Flush());
        }
    }

    [Fact]
    public void APushDecodesAWindowNotTheWholeText()
    {
        var vocabulary = new CountingVocabulary(new ByteVocabulary());
        var detokenizer = new StreamingDetokenizer(vocabulary);
        const int tokens = 2000;
        var text = new StringBuilder();
        for (int i = 0; i < tokens; i++) text.Append(detokenizer.Push('a' + i % 26));
        Assert.Equal(tokens, text.Length);
        // The reference decodes 1 + 2 + ... + n ids (two million here); the window at most 64 a push, one decode each
        // (and one more per slide), which the engine's tests that gate the vocabulary's decodes count on.
        Assert.True(vocabulary.DecodedIds < 80 * tokens, $"{vocabulary.DecodedIds} ids decoded for {tokens} pushes");
        Assert.True(vocabulary.Decodes < tokens + tokens / 32, $"{vocabulary.Decodes} decodes for {tokens} pushes");
    }

    /// <summary>Counts the ids decoded through it.</summary>
    private sealed class CountingVocabulary(IVocabulary inner) : IVocabulary
    {
        public long DecodedIds { get; private set; }

        public int Decodes { get; private set; }

        public string Name => inner.Name;

        public int Size => inner.Size;

        public int EosId => inner.EosId;

        public int PadId => inner.PadId;

        public int[] Encode(string text) => inner.Encode(text);

        public string Decode(ReadOnlySpan<int> ids)
        {
            DecodedIds += ids.Length;
            Decodes++;
            return inner.Decode(ids);
        }
    }
}

/// <summary>
/// The reference streaming detokenizer (Loom's first): decodes every id on every push and emits what is past the
/// text already emitted, holding back a trailing U+FFFD. O(n) a push; the fast one must agree with it.
/// </summary>
internal sealed class ReferenceStreamingDetokenizer
{
    private readonly IVocabulary vocabulary;
    private readonly List<int> ids = new();
    private int emitted;

    public ReferenceStreamingDetokenizer(IVocabulary vocabulary, IReadOnlyList<int> prompt)
    {
        this.vocabulary = vocabulary;
        ids.AddRange(prompt);
        emitted = vocabulary.Decode(ids.ToArray()).Length;
    }

    public string Push(int id)
    {
        ids.Add(id);
        string text = vocabulary.Decode(ids.ToArray());
        int stable = text.Length;
        while (stable > emitted && text[stable - 1] == '\uFFFD') stable--;
        if (stable <= emitted) return "";
        string delta = text[emitted..stable];
        emitted = stable;
        return delta;
    }

    public string Flush()
    {
        string text = vocabulary.Decode(ids.ToArray());
        string rest = text.Length > emitted ? text[emitted..] : "";
        emitted = text.Length;
        return rest;
    }
}
