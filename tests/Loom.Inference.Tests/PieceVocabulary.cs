using Loom.Data;

namespace Loom.Inference.Tests;

/// <summary>
/// A test vocabulary of fixed text pieces: id i decodes to piece i, encoding takes the longest piece
/// that matches, and EOS and PAD follow the pieces. Unlike bytes, every token is whole text, so
/// streamed text and stop sequences can be checked character by character.
/// </summary>
internal sealed class PieceVocabulary(IReadOnlyList<string> pieces) : IVocabulary
{
    /// <summary>Printable ASCII (ids 0..94 for ' '..'~') and a newline (95); EOS 96, PAD 97.</summary>
    public static PieceVocabulary Printable() => new([.. Enumerable.Range(32, 95).Select(c => ((char)c).ToString()), "\n"]);

    public string Name => "pieces";

    public int Size => pieces.Count + 2;

    public int EosId => pieces.Count;

    public int PadId => pieces.Count + 1;

    public int[] Encode(string text)
    {
        var ids = new List<int>();
        for (int at = 0; at < text.Length;)
        {
            int best = -1;
            for (int id = 0; id < pieces.Count; id++)
                if (text.AsSpan(at).StartsWith(pieces[id], StringComparison.Ordinal) && (best < 0 || pieces[id].Length > pieces[best].Length))
                    best = id;
            if (best < 0) throw new ArgumentException($"no piece matches '{text[at..]}'");
            ids.Add(best);
            at += pieces[best].Length;
        }
        return [.. ids];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var text = new System.Text.StringBuilder();
        foreach (int id in ids)
            if (id < pieces.Count) text.Append(pieces[id]);
        return text.ToString();
    }
}

/// <summary>
/// Wraps a vocabulary so that decoding blocks after a number of calls until <see cref="Open"/>: the
/// engine's worker decodes once per generated token, so a test can wait until the worker is held at a
/// known token (<see cref="WaitUntilBlocked"/>) and act (cancel, stop listening) before it goes on,
/// without relying on timing.
/// </summary>
internal sealed class GatedVocabulary(IVocabulary inner, int passingDecodes) : IVocabulary, IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2); // a broken test fails instead of hanging; it never decides a result
    private readonly ManualResetEventSlim gate = new(false);
    private readonly ManualResetEventSlim blocked = new(false);
    private int decodes;

    public string Name => inner.Name;

    public int Size => inner.Size;

    public int EosId => inner.EosId;

    public int PadId => inner.PadId;

    public int[] Encode(string text) => inner.Encode(text);

    public string Decode(ReadOnlySpan<int> ids)
    {
        if (Interlocked.Increment(ref decodes) > passingDecodes)
        {
            blocked.Set();
            if (!gate.Wait(Patience)) throw new TimeoutException("the test never opened the gate");
        }
        return inner.Decode(ids);
    }

    public void WaitUntilBlocked()
    {
        if (!blocked.Wait(Patience)) throw new TimeoutException("nothing reached the gate");
    }

    public void Open() => gate.Set();

    public void Dispose()
    {
        gate.Dispose();
        blocked.Dispose();
    }
}
