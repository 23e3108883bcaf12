using Loom.Build;
using Loom.Core;
using TorchSharp;

namespace Loom.Core.Tests;

public class TorchRuntimeTests
{
    [Fact]
    public void TorchInitialisesAndComputes()
    {
        using var _ = torch.NewDisposeScope();
        var a = torch.tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var product = a.matmul(a);
        Assert.Equal(new float[] { 7, 10, 15, 22 }, product.data<float>().ToArray());
        Assert.Equal(torch.CPU.type, Devices.Resolve("cpu").type);
        Assert.Equal(DeviceType.CPU, Devices.Resolve("auto").type); // no GPU on the test machines
    }

    [Fact]
    public void UnknownDeviceIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Resolve("tpu"));
        Assert.Contains("tpu", e.Message);
    }

    [Fact]
    public void OutputCopyOfLibTorchSharpNeedsNoVersionTheHostLacks()
    {
        string lib = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        Assert.True(File.Exists(lib), lib);
        var host = new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6" }.First(File.Exists);
        var defined = ElfVersionNeeds.DefinedVersionStrings(File.ReadAllBytes(host), "GLIBCXX_");
        var needs = ElfVersionNeeds.Read(File.ReadAllBytes(lib)).Where(n => n.File == "libstdc++.so.6").ToList();
        Assert.Contains(needs, n => n.Version == "GLIBCXX_3.4.32");
        Assert.All(needs.Where(n => n.Version.StartsWith("GLIBCXX_", StringComparison.Ordinal)),
            n => Assert.True(n.IsWeak || defined.Contains(n.Version), $"{n.Version} is required but the host lacks it"));
    }

    [Fact]
    public void WeakenSetsOnlyTheNamedRequirementAndIsIdempotent()
    {
        string original = Path.Combine(Environment.GetEnvironmentVariable("HOME") ?? "/root",
            ".nuget/packages/torchsharp/0.107.0/runtimes/linux-x64/native/libLibTorchSharp.so");
        Assert.True(File.Exists(original), original);
        byte[] elf = File.ReadAllBytes(original);
        var before = ElfVersionNeeds.Read(elf);
        Assert.False(before.Single(n => n.Version == "GLIBCXX_3.4.32").IsWeak);

        var changed = ElfVersionNeeds.Weaken(elf, "libstdc++.so.6", new[] { "GLIBCXX_3.4.32" });
        Assert.Single(changed);
        var after = ElfVersionNeeds.Read(elf);
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++)
            Assert.Equal(before[i].Version == "GLIBCXX_3.4.32" || before[i].IsWeak, after[i].IsWeak);
        Assert.Empty(ElfVersionNeeds.Weaken(elf, "libstdc++.so.6", new[] { "GLIBCXX_3.4.32" }));
    }

    [Fact]
    public void NonElfInputIsRejected()
    {
        Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.Read(new byte[100]));
    }
}
