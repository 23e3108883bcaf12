using TorchSharp;

namespace Loom.Core;

/// <summary>Chooses and initialises the libtorch device that a run uses.</summary>
public static class Devices
{
    /// <summary>
    /// Resolves a device name: <c>cpu</c>, <c>cuda</c> (or <c>cuda:N</c>), or <c>auto</c> (CUDA where
    /// libtorch can see a GPU, else CPU). Initialises the CUDA backend before returning a CUDA device.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not one of the above, or CUDA was asked for and is unavailable.</exception>
    public static torch.Device Resolve(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string n = name.Trim().ToLowerInvariant();
        if (n == "cpu") return torch.CPU;
        if (n == "auto")
            return TryInitCuda() ? torch.CUDA : torch.CPU;
        if (n == "cuda" || n.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!TryInitCuda())
                throw new ArgumentException(
                    "--device cuda: libtorch sees no CUDA GPU; put a CUDA libtorch on LD_LIBRARY_PATH (docs/gpu.md) or use --device cpu");
            return torch.device(n);
        }
        throw new ArgumentException($"unknown device '{name}': use cpu, cuda, cuda:N or auto");
    }

    private static bool TryInitCuda()
    {
        try
        {
            torch.InitializeDeviceType(DeviceType.CUDA);
            return torch.cuda.is_available();
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or DllNotFoundException or TypeInitializationException)
        {
            return false;
        }
    }

    /// <summary>
    /// The marketing name of CUDA device <paramref name="index"/> (e.g. "NVIDIA H100 80GB HBM3"), read
    /// from nvidia-smi since TorchSharp exposes no device-properties call; null when unavailable.
    /// </summary>
    public static string? CudaDeviceName(int index)
    {
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo("nvidia-smi", $"--query-gpu=name --format=csv,noheader --id={index}")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            using var process = System.Diagnostics.Process.Start(start);
            if (process is null) return null;
            string name = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit(5000);
            return process.ExitCode == 0 && name.Length > 0 ? name : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null; // nvidia-smi is not installed
        }
    }

    /// <summary>A short description of the device for logs (CPU thread count or GPU name).</summary>
    public static string Describe(torch.Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.type == DeviceType.CUDA
            ? $"cuda:{Math.Max(0, (int)device.index)} {CudaDeviceName(Math.Max(0, (int)device.index)) ?? ""} ({torch.cuda.device_count()} visible)"
            : $"cpu ({torch.get_num_threads()} threads)";
    }
}
