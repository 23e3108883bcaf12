using System.Globalization;

namespace Loom.Training.Metrics;

/// <summary>
/// A device's peak FLOP/s, the denominator of <see cref="Mfu.Compute"/>, and where the number came from
/// (printed in run logs so an MFU figure can be checked).
/// </summary>
/// <param name="FlopsPerSecond">Peak floating-point operations per second.</param>
/// <param name="Source">What the number is and how it was found, in words.</param>
public sealed record PeakFlops(double FlopsPerSecond, string Source)
{
    /// <summary>
    /// Looks up or estimates the peak of a device.
    /// <list type="bullet">
    /// <item><c>cuda</c> (or <c>cuda:N</c>): the dense BF16 tensor-core peak of a known GPU, found from
    /// <paramref name="deviceName"/> by <see cref="ForGpu"/>.</item>
    /// <item><c>cpu</c>: an FP32 estimate from <c>/proc/cpuinfo</c> by <see cref="FromCpuInfo"/>.</item>
    /// </list>
    /// </summary>
    /// <param name="deviceType">The device kind, case-insensitive: <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</param>
    /// <param name="deviceName">The GPU's name as the driver reports it (for example <c>NVIDIA H100 80GB HBM3</c>); ignored for CPU.</param>
    /// <param name="cpuCores">
    /// The cores doing the work on CPU. Defaults to <see cref="Environment.ProcessorCount"/>, which counts
    /// logical processors and so overstates the peak on hosts with SMT; pass libtorch's thread count
    /// (<c>torch.get_num_threads()</c>, normally the physical cores) for a tighter figure.
    /// </param>
    /// <returns>The peak, or null for an unknown GPU, another device type, or a host whose <c>/proc/cpuinfo</c> gives no clock (so MFU is left out rather than made up).</returns>
    public static PeakFlops? Detect(string deviceType, string? deviceName, int? cpuCores = null)
    {
        ArgumentNullException.ThrowIfNull(deviceType);
        string type = deviceType.Trim().ToLowerInvariant();
        if (type == "cuda" || type.StartsWith("cuda:", StringComparison.Ordinal))
            return deviceName is null ? null : ForGpu(deviceName);
        if (type != "cpu")
            return null;

        const string cpuInfoPath = "/proc/cpuinfo";
        if (!File.Exists(cpuInfoPath))
            return null;
        string cpuInfo;
        try
        {
            cpuInfo = File.ReadAllText(cpuInfoPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        return FromCpuInfo(cpuInfo, cpuCores ?? Environment.ProcessorCount);
    }

    /// <summary>
    /// The dense (no 2:4 sparsity) BF16/FP16 tensor-core peak of a known NVIDIA GPU, from the vendor's
    /// datasheets and whitepapers:
    /// H100 SXM 989e12 (the driver calls it e.g. <c>NVIDIA H100 80GB HBM3</c>), H100 PCIe 756e12,
    /// H100 NVL 835e12, H200 (SXM) 989e12, H200 NVL 835e12, A100 (SXM or PCIe) 312e12, L4 121e12,
    /// GeForce RTX 4090 165e12 (BF16, or FP16 with FP32 accumulation).
    /// Datasheet figures with sparsity are twice these; the 989.4 and 165.2 figures are rounded down.
    /// </summary>
    /// <param name="deviceName">The name as the driver reports it; matching is case-insensitive and by whole word, so an L40 is not taken for an L4.</param>
    /// <returns>The peak, or null when the GPU is not in the table.</returns>
    public static PeakFlops? ForGpu(string deviceName)
    {
        ArgumentNullException.ThrowIfNull(deviceName);
        // Whole-word tokens: "NVIDIA A100-SXM4-80GB" -> {NVIDIA, A100, SXM4, 80GB}.
        var words = new HashSet<string>(
            deviceName.ToUpperInvariant().Split((char[])[' ', '-', '_', '(', ')', ','], StringSplitOptions.RemoveEmptyEntries),
            StringComparer.Ordinal);

        (double peak, string model)? match =
            words.Contains("H200") ? (words.Contains("NVL") ? (835e12, "H200 NVL") : (989e12, "H200 SXM"))
            : words.Contains("H100") ? (words.Contains("PCIE") ? (756e12, "H100 PCIe")
                : words.Contains("NVL") ? (835e12, "H100 NVL")
                : (989e12, "H100 SXM"))
            : words.Contains("A100") ? (312e12, "A100")
            : words.Contains("L4") ? (121e12, "L4")
            : words.Contains("4090") && words.Contains("RTX") ? (165e12, "GeForce RTX 4090")
            : null;
        if (match is not { } m)
            return null;
        return new PeakFlops(m.peak,
            $"NVIDIA {m.model} dense BF16 tensor-core peak, {m.peak / 1e12:0} TFLOP/s (datasheet), matched from device name '{deviceName}'");
    }

    /// <summary>
    /// Estimates a CPU's FP32 peak as <c>cores × clock × FLOPs per cycle per core</c>, with the clock the
    /// highest <c>cpu MHz</c> in <paramref name="cpuInfo"/> (Linux reports the current clock of each
    /// processor; the highest is the nearest to what a busy core runs at) and FLOPs per cycle from the
    /// <c>flags</c> line: 64 with <c>avx512f</c> (two 512-bit FMA units × 16 lanes × 2), 32 with
    /// <c>avx2</c> and <c>fma</c> (two 256-bit FMA units × 8 lanes × 2), 16 otherwise (SSE-class).
    /// It is an upper bound: many AVX-512 parts have one 512-bit FMA unit, and turbo clocks fall under
    /// vector load. CPU training runs in FP32, so this is compared with FP32 model FLOPs.
    /// </summary>
    /// <param name="cpuInfo">The text of <c>/proc/cpuinfo</c>.</param>
    /// <param name="cores">The cores doing the work.</param>
    /// <returns>The estimate, or null when the text has no <c>cpu MHz</c> line (for example on many ARM hosts).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="cores"/> is not positive.</exception>
    public static PeakFlops? FromCpuInfo(string cpuInfo, int cores)
    {
        ArgumentNullException.ThrowIfNull(cpuInfo);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cores);

        double maxMhz = 0;
        HashSet<string>? flags = null;
        string? modelName = null;
        foreach (string rawLine in cpuInfo.Split('\n'))
        {
            int colon = rawLine.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
                continue;
            string key = rawLine[..colon].Trim();
            string value = rawLine[(colon + 1)..].Trim();
            switch (key)
            {
                case "cpu MHz":
                    if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double mhz) && mhz > maxMhz)
                        maxMhz = mhz;
                    break;
                case "flags" when flags is null:
                    flags = new HashSet<string>(value.Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);
                    break;
                case "model name" when modelName is null:
                    modelName = value;
                    break;
            }
        }
        if (maxMhz <= 0)
            return null;

        (int flopsPerCycle, string isa) =
            flags is not null && flags.Contains("avx512f") ? (64, "AVX-512F")
            : flags is not null && flags.Contains("avx2") && flags.Contains("fma") ? (32, "AVX2+FMA")
            : (16, "no AVX2+FMA");
        double peak = cores * (maxMhz * 1e6) * flopsPerCycle;
        string model = modelName is null ? "CPU" : $"CPU '{modelName}'";
        return new PeakFlops(peak, string.Create(CultureInfo.InvariantCulture,
            $"{model} FP32 estimate from /proc/cpuinfo: {cores} cores × {maxMhz} MHz × {flopsPerCycle} FLOPs/cycle ({isa}), an upper bound"));
    }
}
