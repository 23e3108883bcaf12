namespace Loom.Cli.Tests;

/// <summary><c>loom plan</c> as a user runs it.</summary>
public sealed class PlanCommandTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-plan-");

    public void Dispose() => temp.Dispose();

    private static void AssertOneLineError(CliRunner.Result r, string expected)
    {
        Assert.NotEqual(0, r.ExitCode);
        string err = r.Stderr.Trim();
        Assert.StartsWith("loom: error:", err);
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n'));
        Assert.DoesNotContain("   at ", r.Stderr + r.Stdout);
    }

    [Fact]
    public void RanksLayoutsPrintsTheEndToEndTimeAndDrawsTheFrontier()
    {
        string png = Path.Combine(temp.Path, "pareto.png");
        var r = CliRunner.Run(temp.Path, "plan", "--model", "palm-540b", "--hardware", "tpu-v4", "--chips", "64", "--weights", "int8", "--max-batch", "256", "--plot", png);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("64 x tpu-v4 (4x4x4)", r.Stdout);
        Assert.Contains("prefill:", r.Stdout);
        Assert.Contains("decode (first step):", r.Stdout);
        Assert.Contains("ws2d/batch", r.Stdout);
        Assert.Contains("ws1d/heads    infeasible: 48 heads do not split over 64 chips", r.Stdout);
        Assert.Contains("end to end:", r.Stdout);
        Assert.True(File.Exists(png));
        byte[] bytes = File.ReadAllBytes(png);
        Assert.True(bytes.Length > 1000);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
    }

    [Fact]
    public void CostsALoomPresetWithOverrides()
    {
        var r = CliRunner.Run(temp.Path, "plan", "--model", "palm-8b", "--set", "num_layers=16", "--hardware", "h100", "--chips", "8", "--batch", "8", "--layout", "ws1d");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("16 layers", r.Stdout);
        Assert.Contains("ws1d/batch", r.Stdout);
        Assert.DoesNotContain("ws2d", r.Stdout);
    }

    [Fact]
    public void RefusesImpossibleRequestsInOneLine()
    {
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--layout", "ws1d/heads"), "48 heads do not split over 64 chips");
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--hardware", "tpu-v9"), "unknown hardware 'tpu-v9'");
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--chips", "48"), "48 chips do not form a torus slice");
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--batch", "0"), "--batch 0 must be a positive integer");
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--weights", "fp4"), "--weights 'fp4': use bf16 or int8");
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--model", "t5-base"), "decoder-only");
        AssertOneLineError(CliRunner.Run(temp.Path, "plan", "--hardware", "tpu-v5e", "--chips", "4", "--weights", "bf16", "--layout", "ws2d"), "but tpu-v5e has");
    }
}
