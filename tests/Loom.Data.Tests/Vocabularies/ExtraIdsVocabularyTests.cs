namespace Loom.Data.Tests;

public class ExtraIdsVocabularyTests
{
    [Fact]
    public void SentinelsFollowTheT5ConventionWithExtraId0Last()
    {
        var v = new ByteVocabulary().WithExtraIds(100);
        Assert.Equal(358, v.Size);
        Assert.Equal(357, v.SentinelId(0));  // like T5's 32099 in 32100
        Assert.Equal(258, v.SentinelId(99)); // the first id after the inner vocabulary
        Assert.Equal(ByteVocabulary.Eos, v.EosId);
        Assert.Equal(ByteVocabulary.Pad, v.PadId);
        Assert.True(v.IsSentinel(300, out int k));
        Assert.Equal(57, k);
        Assert.False(v.IsSentinel(257, out int none));
        Assert.Equal(-1, none);
        Assert.Throws<ArgumentOutOfRangeException>(() => v.SentinelId(100));
        Assert.Throws<ArgumentOutOfRangeException>(() => v.SentinelId(-1));
    }

    [Fact]
    public void DecodeRendersSentinelsAndKeepsMultiByteCharactersWhole()
    {
        var v = new ByteVocabulary().WithExtraIds(3);
        int[] ids = [.. v.Encode("é"), v.SentinelId(2), 'a', v.EosId, v.SentinelId(0)];
        Assert.Equal("é<extra_id_2>a<extra_id_0>", v.Decode(ids));
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Decode([v.Size]));
    }

    [Fact]
    public void EncodeRecognisesSentinelTextBelowTheCountOnly()
    {
        var v = new ByteVocabulary().WithExtraIds(2);
        int[] ids = v.Encode("a<extra_id_1>b<extra_id_2><extra_id_0>");
        int[] expected = ['a', v.SentinelId(1), 'b', .. "<extra_id_2>".Select(c => (int)c), v.SentinelId(0)];
        Assert.Equal(expected, ids);
        Assert.Equal("a<extra_id_1>b<extra_id_2><extra_id_0>", v.Decode(ids));
    }

    [Fact]
    public void TiktokenWithExtraIdsRoundTripsRandomTextAroundSentinels()
    {
        var v = new TiktokenVocabulary("cl100k_base").WithExtraIds(100);
        Assert.Equal(100278 + 100, v.Size);
        var rng = new Random(7);
        for (int trial = 0; trial < 50; trial++)
        {
            string text = TiktokenVocabularyTests.RandomText(rng, 10) + $"<extra_id_{rng.Next(100)}>" + TiktokenVocabularyTests.RandomText(rng, 10);
            int[] ids = v.Encode(text);
            Assert.Single(ids, id => v.IsSentinel(id, out _));
            Assert.Equal(text, v.Decode(ids));
        }
    }

    [Fact]
    public void NegativeCountIsRefused() =>
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => new ByteVocabulary().WithExtraIds(-1)).ParamName);

    [Fact]
    public void SpecSuffixWrapsAndNameRoundTrips()
    {
        var v = Assert.IsType<ExtraIdsVocabulary>(Vocabularies.Create("byte+extra_ids=100"));
        Assert.Equal(100, v.ExtraIdCount);
        Assert.IsType<ByteVocabulary>(v.Inner);
        Assert.Equal("byte+extra_ids=100", v.Name);
        Assert.Equal(v.Size, Vocabularies.Create(v.Name).Size);
        Assert.Throws<ArgumentException>(() => Vocabularies.Create("byte+extra_ids=-3"));
    }
}
