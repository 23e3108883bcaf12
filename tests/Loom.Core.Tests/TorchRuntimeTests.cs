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
        var auto = Devices.Resolve("auto");
        // CUDA exactly where libtorch can use it (Resolve has tried to initialise it by now), else the CPU.
        Assert.Equal(torch.cuda.is_available() ? DeviceType.CUDA : DeviceType.CPU, auto.type);
    }

    /// <summary>The libstdc++ this process loaded (libtorch pulls it in), read from /proc/self/maps.</summary>
    private static string LoadedLibStdCxx()
    {
        using (torch.NewDisposeScope()) _ = torch.ones(1); // make sure libtorch, and so libstdc++, is loaded
        string? path = File.ReadLines("/proc/self/maps")
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6)
            .Select(fields => string.Join(' ', fields.Skip(5)))
            .FirstOrDefault(p => Path.GetFileName(p).StartsWith("libstdc++.so", StringComparison.Ordinal));
        Assert.True(path is not null && File.Exists(path), "this process has no libstdc++ mapped");
        return path!;
    }

    /// <summary>The package's own libLibTorchSharp.so, as restored into the NuGet cache (the build records its path).</summary>
    private static string PackageLibTorchSharp()
    {
        string? path = typeof(TorchRuntimeTests).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>()
            .SingleOrDefault(a => a.Key == "LibTorchSharpPackageCopy")?.Value;
        Assert.False(string.IsNullOrEmpty(path), "the build did not record the package's libLibTorchSharp.so");
        return path!;
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
        string host = LoadedLibStdCxx();
        var defined = ElfVersionNeeds.DefinedVersionStrings(File.ReadAllBytes(host), "GLIBCXX_");
        var needs = ElfVersionNeeds.Read(File.ReadAllBytes(lib)).Where(n => n.File == "libstdc++.so.6").ToList();
        Assert.Contains(needs, n => n.Version == "GLIBCXX_3.4.32");
        Assert.All(needs.Where(n => n.Version.StartsWith("GLIBCXX_", StringComparison.Ordinal)),
            n => Assert.True(n.IsWeak || defined.Contains(n.Version), $"{n.Version} is required but the host lacks it"));
    }

    [Fact]
    public void WeakenSetsOnlyTheNamedRequirementAndIsIdempotent()
    {
        string original = PackageLibTorchSharp();
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
