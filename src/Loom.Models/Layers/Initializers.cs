using TorchSharp;
using static TorchSharp.torch;

namespace Loom.Models.Layers;

/// <summary>Weight initialisation that gives the same weights on every device for a given generator.</summary>
internal static class Initializers
{
    /// <summary>
    /// Fills <paramref name="weight"/> from N(0, std²). With a generator, the values are drawn on the
    /// CPU (where the generator lives) and copied to the weight's device, so a seed gives the same
    /// initial weights on the CPU and on a GPU, and a CUDA weight never meets a CPU generator (which
    /// libtorch refuses).
    /// </summary>
    public static void Normal(Tensor weight, double std, Generator? generator)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        if (generator is null || weight.device.type is DeviceType.CPU or DeviceType.META)
        {
            weight.normal_(0, std, generator);
            return;
        }
        var values = empty(weight.shape, weight.dtype).normal_(0, std, generator); // on the CPU
        weight.copy_(values);
    }
}
