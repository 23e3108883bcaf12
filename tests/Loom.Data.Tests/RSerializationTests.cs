namespace Loom.Data.Tests;

public class RSerializationTests
{
    private static void AssertStrings(string?[] expected, object? actual) =>
        Assert.Equal(expected.AsEnumerable(), Assert.IsType<string?[]>(actual).AsEnumerable());

    [Fact]
    public void ReadsCharacterVectorWithNa()
    {
        byte[] data = RWriter.Serialize(w => w.Strings("EMMA", "", null, "naïve £5 😀"));
        var value = Assert.IsType<string?[]>(RSerialization.Unserialize(data));
        AssertStrings(["EMMA", "", null, "naïve £5 😀"], value);
    }

    [Fact]
    public void ReadsTheBytesDataMdDescribes()
    {
        // Written out by hand from docs/data.md: header, flags 16, count, then (flags, length, bytes) entries.
        byte[] data =
        [
            (byte)'X', (byte)'\n', 0, 0, 0, 3, 0, 4, 2, 1, 0, 3, 5, 0, 0, 0, 0, 5, (byte)'U', (byte)'T', (byte)'F', (byte)'-', (byte)'8',
            0, 0, 0, 16, 0, 0, 0, 2,
            0, 4, 0, 9, 0, 0, 0, 2, (byte)'h', (byte)'i',
            0, 0, 0, 9, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        AssertStrings(["hi", null], RSerialization.Unserialize(data));
    }

    [Fact]
    public void ReadsNamedListsWithSymbolReferences()
    {
        byte[] data = RWriter.Serialize(w => w.NamedList(
            ("a", x => x.Ints(1, 2, int.MinValue)),
            ("b", x => x.NamedList(("c", y => y.Logical(true)))))); // the second "names" symbol is a back-reference
        var list = Assert.IsType<RList>(RSerialization.Unserialize(data));
        Assert.Equal(["a", "b"], list.Names!);
        Assert.Equal([1, 2, int.MinValue], Assert.IsType<int[]>(list["a"]));
        var inner = Assert.IsType<RList>(list["b"]);
        Assert.Equal([true], Assert.IsType<bool?[]>(inner["c"]));
        Assert.Throws<KeyNotFoundException>(() => list["z"]);
    }

    [Fact]
    public void RefusesTruncatedAndForeignData()
    {
        byte[] data = RWriter.Serialize(w => w.Strings("one", "two"));
        Assert.Throws<InvalidDataException>(() => RSerialization.Unserialize(data.AsSpan(0, data.Length - 2)));
        Assert.Throws<InvalidDataException>(() => RSerialization.Unserialize("A\n1\n"u8));
        // A count far beyond the data must fail cleanly rather than allocate.
        byte[] huge = RWriter.Serialize(w => { w.Int(16); w.Int(int.MaxValue); });
        Assert.Throws<InvalidDataException>(() => RSerialization.Unserialize(huge));
    }

    [Fact]
    public void RefusesUnsupportedTypes()
    {
        byte[] closure = RWriter.Serialize(w => w.Int(3)); // CLOSXP
        Assert.Throws<NotSupportedException>(() => RSerialization.Unserialize(closure));
    }

    [Fact]
    public void ReadsBlobsBackToBack()
    {
        byte[] first = RWriter.Blob(RWriter.Serialize(w => w.Strings("PERSUASION", null, "Chapter 1")));
        byte[] second = RWriter.Blob(RWriter.Serialize(w => w.Strings("EMMA")));
        byte[] rdb = [.. first, .. second];
        AssertStrings(["PERSUASION", null, "Chapter 1"], RLazyLoadDatabase.ReadBlob(rdb, 0, first.Length));
        AssertStrings(["EMMA"], RLazyLoadDatabase.ReadBlob(rdb, first.Length, second.Length));
        Assert.Throws<InvalidDataException>(() => RLazyLoadDatabase.ReadBlob(rdb, first.Length, second.Length + 1));
        byte[] corrupt = [.. first];
        corrupt[10] ^= 0xFF;
        Assert.Throws<InvalidDataException>(() => RLazyLoadDatabase.ReadBlob(corrupt, 0, corrupt.Length));
    }

    [Fact]
    public void ReadsVariablesThroughTheIndex()
    {
        var (rdx, rdb) = RWriter.Database(
            ("alpha", RWriter.Serialize(w => w.Strings("a", null))),
            ("beta", RWriter.Serialize(w => w.Ints(7))));
        var variables = RLazyLoadDatabase.ReadVariables(rdx, rdb);
        Assert.Equal(["alpha", "beta"], variables.Select(v => v.Key));
        AssertStrings(["a", null], variables[0].Value);
        Assert.Equal([7], Assert.IsType<int[]>(variables[1].Value));
        Assert.Throws<InvalidDataException>(() => RLazyLoadDatabase.ReadVariables(rdb, rdb)); // not gzip
    }
}
