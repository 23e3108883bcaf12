using Loom.Models;
using Loom.Models.T5;
using TorchSharp;

namespace Loom.Testing;

/// <summary>
/// Reproducible randomness for tests that run in parallel: each draws from its own seeded
/// <see cref="torch.Generator"/>, never from torch's global generator (which other tests share).
/// </summary>
public static class Seeded
{
    /// <summary>A CPU generator seeded with <paramref name="seed"/>; dispose it when done.</summary>
    public static torch.Generator Generator(long seed) => new(checked((ulong)seed));

    /// <summary>A model whose initial weights depend only on <paramref name="seed"/>.</summary>
    public static DecoderLm Model(DecoderLmOptions options, long seed, torch.Device? device = null)
    {
        using var generator = Generator(seed);
        return new DecoderLm(options, device, generator);
    }

    /// <summary>A T5 model whose initial weights depend only on <paramref name="seed"/>.</summary>
    public static T5Model Model(T5Options options, long seed, torch.Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var generator = Generator(seed);
        return (T5Model)options.Build(device, generator);
    }
}
