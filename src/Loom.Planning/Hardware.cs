namespace Loom.Planning;

/// <summary>How a system's chips are wired.</summary>
public enum InterconnectKind
{
    /// <summary>A TPU slice: a 2D or 3D torus of inter-chip links, each axis with its own links, usable at once (ICI).</summary>
    Torus,

    /// <summary>GPUs: a switched NVLink domain of up to <see cref="HardwareSpec.NodeSize"/> chips, InfiniBand between domains.</summary>
    SwitchedNodes,
}

/// <summary>
/// One accelerator's published peak figures. Bandwidths are one-way bytes per second per chip; FLOP/s are
/// dense (no sparsity).
/// </summary>
/// <param name="Name">The name <c>--hardware</c> takes.</param>
/// <param name="PeakBf16">Peak bf16 matmul FLOP/s.</param>
/// <param name="PeakInt8">Peak int8 matmul OP/s (kept for reference: the model computes in bf16 and int8 only shrinks weights, as in the paper).</param>
/// <param name="HbmBandwidth">HBM bytes per second.</param>
/// <param name="HbmCapacity">HBM bytes.</param>
/// <param name="Interconnect">Torus or switched nodes.</param>
/// <param name="TorusDims">Torus dimensions (2 or 3) for TPUs; 0 for GPUs.</param>
/// <param name="AxisBandwidth">TPU: one-way bytes/s per chip along one torus axis (two links, one each way round the ring). GPU: NVLink bytes/s per chip.</param>
/// <param name="InterNodeBandwidth">GPU: InfiniBand bytes/s per chip between nodes; 0 for TPUs.</param>
/// <param name="NodeSize">GPU: chips per NVLink domain; 0 for TPUs.</param>
/// <param name="MaxChips">The largest system (a TPU pod; for GPUs an arbitrary large bound).</param>
public sealed record HardwareSpec(string Name, double PeakBf16, double PeakInt8, double HbmBandwidth, double HbmCapacity,
    InterconnectKind Interconnect, int TorusDims, double AxisBandwidth, double InterNodeBandwidth, int NodeSize, int MaxChips)
{
    /// <summary>
    /// The chips' wiring for a system of <paramref name="chips"/>: a TPU slice of a power of two chips as close
    /// to a cube (square) as it goes, e.g. 64 TPU v4 = 4×4×4; GPUs as NVLink nodes of 8, joined by InfiniBand.
    /// </summary>
    /// <exception cref="ArgumentException">No such system: not a power of two for a TPU, not 1, 2, 4 or a multiple of 8 GPUs, or larger than the largest.</exception>
    public Topology TopologyFor(int chips)
    {
        if (chips <= 0) throw new ArgumentException($"--chips {chips} must be a positive integer");
        if (chips > MaxChips) throw new ArgumentException($"{Name}: {chips} chips exceed the largest system ({MaxChips} chips)");
        if (Interconnect == InterconnectKind.Torus)
        {
            if (!IsPowerOfTwo(chips))
                throw new ArgumentException($"{Name}: {chips} chips do not form a torus slice; use a power of two (e.g. {1 << (int)Math.Log2(chips)} or {2 << (int)Math.Log2(chips)})");
            var dims = new int[TorusDims];
            Array.Fill(dims, 1);
            for (int c = chips, i = 0; c > 1; c /= 2, i = (i + 1) % TorusDims) dims[i] *= 2;
            Array.Sort(dims, (a, b) => b.CompareTo(a));
            var axes = new List<MeshAxis>();
            for (int i = 0; i < dims.Length; i++)
                if (dims[i] > 1) axes.Add(new MeshAxis("xyz"[i].ToString(), dims[i], AxisBandwidth));
            return new Topology(this, axes, Concurrent: true);
        }
        if (chips < NodeSize ? !IsPowerOfTwo(chips) : chips % NodeSize != 0)
            throw new ArgumentException($"{Name}: {chips} GPUs are not whole NVLink nodes; use 1, 2, 4 or a multiple of {NodeSize}");
        // The switch lets a node split into any two axes; each stage of a collective gets the full NVLink bandwidth.
        int node = Math.Min(chips, NodeSize), a = 1 << (((int)Math.Log2(node) + 1) / 2), b = node / a;
        var gpuAxes = new List<MeshAxis>();
        if (chips > NodeSize) gpuAxes.Add(new MeshAxis("ib", chips / NodeSize, InterNodeBandwidth));
        if (a > 1) gpuAxes.Add(new MeshAxis("nvA", a, AxisBandwidth));
        if (b > 1) gpuAxes.Add(new MeshAxis("nvB", b, AxisBandwidth));
        return new Topology(this, gpuAxes, Concurrent: false);
    }

    private static bool IsPowerOfTwo(int n) => n > 0 && (n & (n - 1)) == 0;
}

/// <summary>The accelerators <c>loom plan --hardware</c> knows, with their public datasheet figures.</summary>
public static class HardwareCatalog
{
    private const double G = 1e9, T = 1e12, GiB = 1024.0 * 1024 * 1024;

    /// <summary>TPU v4 as Pope et al. state it: 275 TFLOP/s bf16, 32 GiB HBM at 1200 GB/s, 270 GB/s ICI per chip in a 3D torus (6 links, 90 GB/s per axis).</summary>
    public static HardwareSpec TpuV4 { get; } = new("tpu-v4", 275 * T, 275 * T, 1200 * G, 32 * GiB, InterconnectKind.Torus, 3, 90 * G, 0, 0, 4096);

    /// <summary>TPU v5e: 197 TFLOP/s bf16, 394 TOP/s int8, 16 GiB HBM at 819 GB/s, 2D torus of up to 16×16, 45 GB/s per link one way.</summary>
    public static HardwareSpec TpuV5e { get; } = new("tpu-v5e", 197 * T, 394 * T, 819 * G, 16 * GiB, InterconnectKind.Torus, 2, 90 * G, 0, 0, 256);

    /// <summary>TPU v5p: 459 TFLOP/s bf16, 918 TOP/s int8, 95 GiB HBM at 2765 GB/s, 3D torus, 90 GB/s per link one way.</summary>
    public static HardwareSpec TpuV5p { get; } = new("tpu-v5p", 459 * T, 918 * T, 2765 * G, 95 * GiB, InterconnectKind.Torus, 3, 180 * G, 0, 0, 8192);

    /// <summary>H100 SXM: 989 TFLOP/s bf16, 1979 TOP/s int8, 80 GB HBM3 at 3.35 TB/s, NVLink 4 450 GB/s one way within 8, 400 Gb/s InfiniBand per GPU beyond.</summary>
    public static HardwareSpec H100 { get; } = new("h100", 989 * T, 1979 * T, 3350 * G, 80 * G, InterconnectKind.SwitchedNodes, 0, 450 * G, 50 * G, 8, 1 << 20);

    /// <summary>H200: the H100's compute with 141 GB HBM3e at 4.8 TB/s.</summary>
    public static HardwareSpec H200 { get; } = H100 with { Name = "h200", HbmBandwidth = 4800 * G, HbmCapacity = 141 * G };

    /// <summary>All known accelerators.</summary>
    public static IReadOnlyList<HardwareSpec> All { get; } = [TpuV4, TpuV5e, TpuV5p, H100, H200];

    /// <summary>The accelerator named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">An unknown name; the message lists the known ones.</exception>
    public static HardwareSpec Get(string name) =>
        All.FirstOrDefault(h => string.Equals(h.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown hardware '{name}': use one of {string.Join(", ", All.Select(h => h.Name))}");
}
