using Loom.Distributed;
using static TorchSharp.torch;

namespace Loom.Inference.Engine;

/// <summary>
/// A step's model input as plain data: the (B, T) token ids, right-padded, and per row its first position, its count
/// and its block ids. What rank 0 of a model group broadcasts every step: two int64 collectives, a fixed header
/// [kind, B, T, blocks per row] then the payload.
/// </summary>
/// <param name="Tokens">Token ids, (B·T) row-major.</param>
/// <param name="Width">T, the longest row.</param>
/// <param name="Rows">Per row the block ids, the first position and the count.</param>
internal sealed record StepInput(long[] Tokens, int Width, PagedRow[] Rows)
{
    private const int HeaderLength = 4;
    private const long Step = 1, Stop = 0;

    /// <summary>The input of a scheduled step (the rows' new tokens are in their sequences, their blocks in their tables).</summary>
    public static StepInput From(SchedulerOutput plan)
    {
        int width = plan.Rows.Max(r => r.Count);
        var tokens = new long[plan.Rows.Count * width];
        var rows = new PagedRow[plan.Rows.Count];
        for (int b = 0; b < plan.Rows.Count; b++)
        {
            var (s, start, count) = plan.Rows[b];
            for (int i = 0; i < count; i++) tokens[b * width + i] = s.Tokens[start + i];
            rows[b] = new PagedRow(s.Table.BlockIds, start, count);
        }
        return new StepInput(tokens, width, rows);
    }

    /// <summary>Sends the input from rank 0 to every rank of <paramref name="group"/>.</summary>
    public void Broadcast(ICommunicator group, Device device)
    {
        int b = Rows.Length, blocks = Rows.Max(r => r.BlockIds.Count);
        using var header = tensor(new long[] { Step, b, Width, blocks }, int64, device);
        group.Broadcast(header, 0);
        // Payload: tokens (B·T), starts (B), counts (B), block counts (B), block ids (B·blocks).
        var payload = new long[b * Width + 3 * b + b * blocks];
        Tokens.CopyTo(payload, 0);
        int at = b * Width;
        for (int r = 0; r < b; r++)
        {
            payload[at + r] = Rows[r].Start;
            payload[at + b + r] = Rows[r].Count;
            payload[at + 2 * b + r] = Rows[r].BlockIds.Count;
            for (int j = 0; j < Rows[r].BlockIds.Count; j++) payload[at + 3 * b + r * blocks + j] = Rows[r].BlockIds[j];
        }
        using var sent = tensor(payload, int64, device);
        group.Broadcast(sent, 0);
    }

    /// <summary>Tells every rank of <paramref name="group"/> that no step follows.</summary>
    public static void BroadcastStop(ICommunicator group, Device device)
    {
        using var header = tensor(new long[] { Stop, 0, 0, 0 }, int64, device);
        group.Broadcast(header, 0);
    }

    /// <summary>Receives rank 0's next input; null when rank 0 stopped.</summary>
    public static StepInput? Receive(ICommunicator group, Device device)
    {
        using var scope = NewDisposeScope();
        using var header = zeros(HeaderLength, int64, device);
        group.Broadcast(header, 0);
        var h = header.cpu().data<long>().ToArray();
        if (h[0] == Stop) return null;
        int b = (int)h[1], width = (int)h[2], blocks = (int)h[3];
        using var received = zeros(b * width + 3 * b + b * blocks, int64, device);
        group.Broadcast(received, 0);
        var payload = received.cpu().data<long>().ToArray();
        int at = b * width;
        var rows = new PagedRow[b];
        for (int r = 0; r < b; r++)
        {
            int count = (int)payload[at + 2 * b + r];
            var ids = new int[count];
            for (int j = 0; j < count; j++) ids[j] = (int)payload[at + 3 * b + r * blocks + j];
            rows[r] = new PagedRow(ids, (int)payload[at + r], (int)payload[at + b + r]);
        }
        return new StepInput(payload[..at], width, rows);
    }
}
