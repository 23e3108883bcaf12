namespace Loom.Models.Quantization;

/// <summary>A layer whose matmul kernels can be stored as int8 for inference (<see cref="LanguageModel.Quantize"/> finds them).</summary>
public interface IQuantizableKernel
{
    /// <summary>Whether the kernels are held as int8.</summary>
    bool IsQuantized { get; }

    /// <summary>Bytes the kernels occupy (float, or int8 values plus scales).</summary>
    long KernelBytes { get; }

    /// <summary>Replaces the float kernels with int8 values and per-output-channel scales.</summary>
    void QuantizeInt8();
}
