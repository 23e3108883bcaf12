using Loom.Planning;

namespace Loom.Planning.Tests;

public sealed class HardwareTests
{
    [Theory]
    [InlineData("tpu-v4", 64, "4x4x4")]
    [InlineData("tpu-v4", 32, "4x4x2")]
    [InlineData("tpu-v5e", 256, "16x16")]
    [InlineData("tpu-v5p", 8, "2x2x2")]
    [InlineData("h100", 8, "4x2")]
    [InlineData("h200", 32, "4x4x2")]
    public void TopologiesHaveTheExpectedShape(string name, int chips, string shape)
    {
        Topology t = HardwareCatalog.Get(name).TopologyFor(chips);
        Assert.Equal(shape, t.Shape);
        Assert.Equal(chips, t.Chips);
    }

    [Theory]
    [InlineData("tpu-v4", 48, "do not form a torus slice")]
    [InlineData("tpu-v5e", 512, "exceed the largest system (256 chips)")]
    [InlineData("h100", 12, "not whole NVLink nodes")]
    [InlineData("tpu-v4", 0, "must be a positive integer")]
    public void SystemsThatDoNotExistAreRefused(string name, int chips, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => HardwareCatalog.Get(name).TopologyFor(chips)).Message);

    [Fact]
    public void UnknownHardwareNamesTheKnownOnes() =>
        Assert.Contains("tpu-v4, tpu-v5e, tpu-v5p, h100, h200", Assert.Throws<ArgumentException>(() => HardwareCatalog.Get("tpu-v9")).Message);

    [Fact]
    public void TorusCollectivesUseTheChipsBandwidthOrTheirAxes()
    {
        Topology t = HardwareCatalog.TpuV4.TopologyFor(64); // 4x4x4, 90 GB/s per axis, 270 GB/s per chip
        MeshAxis[] x = [t.Axes[0]];
        Assert.Equal(1e9 * 0.75 / 270e9, t.CollectiveSeconds(1e9, x), 15);
        Assert.Equal(1e9 * 0.75 / 90e9, (t with { UniformBandwidth = false }).CollectiveSeconds(1e9, x), 15);
        Assert.Equal(1e9 * (63 / 64.0) / 270e9, t.CollectiveSeconds(1e9, t.Axes), 15);
        Assert.Equal(0, t.CollectiveSeconds(1e9, []));
    }

    [Fact]
    public void GpuCollectivesRunHierarchically()
    {
        Topology t = HardwareCatalog.H100.TopologyFor(16); // ib 2 (50 GB/s), NVLink 4 x 2 (450 GB/s)
        // 800 MB: NVLink stage of 2 gets all of it, the stage of 4 a half, InfiniBand an eighth.
        double expected = 800e6 * 0.5 / 450e9 + 400e6 * 0.75 / 450e9 + 100e6 * 0.5 / 50e9;
        Assert.Equal(expected, t.CollectiveSeconds(800e6, t.Axes), 15);
    }

    [Fact]
    public void LayoutNamesRoundTrip()
    {
        foreach (Layout l in Layout.All) Assert.Equal(l, Layout.Parse(l.Name));
        Assert.Equal(new Layout(FeedForwardLayout.WeightStationary2D, AttentionSharding.Batch), Layout.Parse("ws2d"));
        Assert.Contains("ws1d/heads", Assert.Throws<ArgumentException>(() => Layout.Parse("ws3d")).Message);
    }
}
