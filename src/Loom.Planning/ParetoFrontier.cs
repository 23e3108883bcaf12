namespace Loom.Planning;

/// <summary>One configuration on the latency–MFU plane (Pope et al., Figure 1).</summary>
/// <param name="Layout">The layout.</param>
/// <param name="Batch">The batch size.</param>
/// <param name="LatencySeconds">Latency of the pass.</param>
/// <param name="Mfu">Model FLOPs utilisation.</param>
public sealed record ParetoPoint(Layout Layout, int Batch, double LatencySeconds, double Mfu);

/// <summary>The latency–cost trade-off: the configurations no other one beats on both latency and MFU.</summary>
public static class ParetoFrontier
{
    /// <summary>
    /// The points not dominated by another (one at most as slow with at least the MFU, better in one of them),
    /// ordered by latency; of identical points, the first is kept.
    /// </summary>
    public static IReadOnlyList<ParetoPoint> Select(IEnumerable<ParetoPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        var frontier = new List<ParetoPoint>();
        double bestMfu = double.NegativeInfinity;
        // Fastest first (higher MFU first among equally fast): a point is on the frontier when it beats the best MFU so far.
        foreach (ParetoPoint p in points.Where(p => double.IsFinite(p.LatencySeconds)).OrderBy(p => p.LatencySeconds).ThenByDescending(p => p.Mfu))
        {
            if (p.Mfu > bestMfu)
            {
                frontier.Add(p);
                bestMfu = p.Mfu;
            }
        }
        return frontier;
    }

    /// <summary>
    /// Every feasible (layout, batch) point of a phase, for batch sizes 1, 2, 4, ... up to <paramref name="maxBatch"/>:
    /// <paramref name="pass"/> gives the pass for a batch size (a prefill of the input, or one decode step).
    /// </summary>
    public static IReadOnlyList<ParetoPoint> Sweep(InferenceCostModel model, Func<int, InferencePass> pass, int maxBatch)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pass);
        if (maxBatch <= 0) throw new ArgumentException($"largest batch {maxBatch} must be a positive integer");
        var points = new List<ParetoPoint>();
        for (long b = 1; b <= maxBatch; b *= 2)
            foreach (Layout layout in Layout.All)
            {
                PassCost cost = model.Evaluate(layout, pass((int)b));
                if (cost.Feasible) points.Add(new ParetoPoint(layout, (int)b, cost.LatencySeconds, cost.Mfu));
            }
        return points;
    }
}
