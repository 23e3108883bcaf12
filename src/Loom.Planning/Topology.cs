namespace Loom.Planning;

/// <summary>One axis of the chip mesh: its size and the one-way bandwidth each chip has along it.</summary>
/// <param name="Name">x, y, z for a torus; nvlink or ib for GPUs.</param>
/// <param name="Size">Chips along the axis.</param>
/// <param name="Bandwidth">One-way bytes/s per chip for a collective along this axis.</param>
public sealed record MeshAxis(string Name, int Size, double Bandwidth);

/// <summary>
/// A system's chips as a mesh of axes, and what a collective over some of them costs.
/// </summary>
/// <param name="Hardware">The chips.</param>
/// <param name="Axes">Axes of size at least 2, outermost first.</param>
/// <param name="Concurrent">
/// True for a torus: every axis has its own links, so a collective over several axes uses their bandwidth
/// together. False for GPUs: a collective over several axes runs hierarchically, outer (slower) axis first on
/// the smaller piece, then the inner one.
/// </param>
public sealed record Topology(HardwareSpec Hardware, IReadOnlyList<MeshAxis> Axes, bool Concurrent)
{
    /// <summary>
    /// True (default; Pope et al.'s accounting, a single "network bandwidth" in every formula): a torus collective
    /// runs at the chip's whole interconnect bandwidth whichever axes it spans. False: only at the bandwidth of
    /// the links along its own axes (a one-axis collective on a 3D torus gets a third). GPUs are unaffected.
    /// </summary>
    public bool UniformBandwidth { get; init; } = true;

    /// <summary>Number of chips.</summary>
    public int Chips => Axes.Aggregate(1, (n, a) => n * a.Size);

    /// <summary>The shape as the paper writes it, e.g. 4x4x4.</summary>
    public string Shape => Axes.Count == 0 ? "1" : string.Join("x", Axes.Select(a => a.Size));

    /// <summary>
    /// Seconds for an all-gather whose result is <paramref name="bytesPerChip"/> per chip (or a reduce-scatter
    /// whose input is that large) over <paramref name="axes"/>: each chip receives all but its own 1/K of it,
    /// bytes · (1 − 1/K) / bandwidth (Pope et al., appendix A.1, the bandwidth-bound ring/torus cost).
    /// </summary>
    public double CollectiveSeconds(double bytesPerChip, IReadOnlyList<MeshAxis> axes)
    {
        ArgumentNullException.ThrowIfNull(axes);
        int k = axes.Aggregate(1, (n, a) => n * a.Size);
        if (k <= 1 || bytesPerChip <= 0) return 0;
        if (Concurrent) return bytesPerChip * (1 - 1.0 / k) / (UniformBandwidth ? Axes : axes).Sum(a => a.Bandwidth);
        // Hierarchical: along the outer axis the chips exchange the piece the inner axes will later share.
        double seconds = 0, piece = bytesPerChip;
        foreach (MeshAxis axis in axes.Reverse())
        {
            seconds += piece * (1 - 1.0 / axis.Size) / axis.Bandwidth;
            piece /= axis.Size;
        }
        return seconds;
    }
}
