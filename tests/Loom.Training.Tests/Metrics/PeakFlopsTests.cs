using Loom.Training.Metrics;

namespace Loom.Training.Tests.Metrics;

public sealed class PeakFlopsTests
{
    [Theory]
    [InlineData("NVIDIA H100 80GB HBM3", 989e12)]
    [InlineData("NVIDIA H100 PCIe", 756e12)]
    [InlineData("NVIDIA H100 NVL", 835e12)]
    [InlineData("NVIDIA H200", 989e12)]
    [InlineData("NVIDIA H200 NVL", 835e12)]
    [InlineData("NVIDIA A100-SXM4-80GB", 312e12)]
    [InlineData("NVIDIA A100 80GB PCIe", 312e12)]
    [InlineData("NVIDIA L4", 121e12)]
    [InlineData("NVIDIA GeForce RTX 4090", 165e12)]
    [InlineData("nvidia h100 pcie", 756e12)]
    public void Knows_common_gpus(string name, double expected)
    {
        PeakFlops? peak = PeakFlops.ForGpu(name);
        Assert.NotNull(peak);
        Assert.Equal(expected, peak.FlopsPerSecond);
        Assert.Contains(name, peak.Source, StringComparison.Ordinal);
        Assert.Equal(peak, PeakFlops.Detect("cuda", name));
        Assert.Equal(peak, PeakFlops.Detect("CUDA:1", name));
    }

    [Theory]
    [InlineData("NVIDIA L40S")]
    [InlineData("NVIDIA L40")]
    [InlineData("Tesla V100-SXM2-16GB")]
    [InlineData("NVIDIA GeForce RTX 3090")]
    [InlineData("")]
    public void Returns_null_for_unknown_gpus_rather_than_guessing(string name)
    {
        Assert.Null(PeakFlops.ForGpu(name));
    }

    [Fact]
    public void Detect_returns_null_without_a_gpu_name_or_for_other_device_types()
    {
        Assert.Null(PeakFlops.Detect("cuda", null));
        Assert.Null(PeakFlops.Detect("mps", "Apple M2"));
    }

    private const string Avx2CpuInfo =
        "processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 2900.000\nflags\t\t: fpu sse2 avx fma avx2\n\n" +
        "processor\t: 1\nmodel name\t: Test CPU\ncpu MHz\t\t: 3000.000\nflags\t\t: fpu sse2 avx fma avx2\n";

    [Fact]
    public void Cpu_estimate_is_cores_times_highest_clock_times_flops_per_cycle()
    {
        PeakFlops? peak = PeakFlops.FromCpuInfo(Avx2CpuInfo, cores: 4);
        Assert.NotNull(peak);
        // 4 cores × 3000 MHz × 32 FLOPs/cycle (AVX2+FMA)
        Assert.Equal(384e9, peak.FlopsPerSecond);
        Assert.Contains("Test CPU", peak.Source, StringComparison.Ordinal);
        Assert.Contains("AVX2+FMA", peak.Source, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("fpu sse2 avx fma avx2 avx512f avx512bw", 64)]
    [InlineData("fpu sse2 avx avx2", 16)] // AVX2 without FMA
    [InlineData("fpu sse2 avx fma", 16)] // FMA without AVX2
    [InlineData("fpu sse2", 16)]
    public void Flops_per_cycle_follow_the_vector_flags(string flags, int flopsPerCycle)
    {
        string cpuInfo = $"processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: {flags}\n";
        Assert.Equal(2 * 2000e6 * flopsPerCycle, PeakFlops.FromCpuInfo(cpuInfo, 2)!.FlopsPerSecond);
    }

    [Fact]
    public void Cpu_without_flags_line_counts_16_flops_per_cycle()
    {
        Assert.Equal(1500e6 * 16, PeakFlops.FromCpuInfo("cpu MHz\t: 1500\n", 1)!.FlopsPerSecond);
    }

    [Fact]
    public void Cpu_info_without_a_clock_gives_no_estimate()
    {
        // Typical aarch64 /proc/cpuinfo: no "cpu MHz" and "Features" instead of "flags".
        Assert.Null(PeakFlops.FromCpuInfo("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n", 8));
    }

    [Fact]
    public void Cpu_estimate_needs_a_positive_core_count()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PeakFlops.FromCpuInfo(Avx2CpuInfo, 0));
    }

    [Fact]
    public void Detect_cpu_reads_proc_cpuinfo_where_there_is_one()
    {
        PeakFlops? explicitCores = PeakFlops.Detect("cpu", null, cpuCores: 3);
        PeakFlops? defaultCores = PeakFlops.Detect("CPU", "ignored");
        if (!File.Exists("/proc/cpuinfo") || !File.ReadAllText("/proc/cpuinfo").Contains("cpu MHz", StringComparison.Ordinal))
        {
            Assert.Null(explicitCores);
            Assert.Null(defaultCores);
            return;
        }
        // The clock is read live and may move between calls, so check the shape, not the value.
        Assert.NotNull(explicitCores);
        Assert.NotNull(defaultCores);
        Assert.True(explicitCores.FlopsPerSecond > 0);
        Assert.Contains("/proc/cpuinfo: 3 cores", explicitCores.Source, StringComparison.Ordinal);
        Assert.Contains($"/proc/cpuinfo: {Environment.ProcessorCount} cores", defaultCores.Source, StringComparison.Ordinal);
    }
}
