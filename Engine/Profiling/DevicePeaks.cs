using System.Globalization;
using System.Runtime.Intrinsics;
using Tp7.Engine.Devices;

namespace Tp7.Engine.Profiling;

/// <summary>
/// What a device can do at most: FLOP/s per precision (a multiply-add counts 2; dense, without the 2:4 sparsity
/// NVIDIA's datasheets quote beside it) and memory bandwidth. The profiler divides achieved rates by these.
/// </summary>
/// <param name="Fp32">SIMT (CUDA core / SIMD FMA) fp32.</param>
/// <param name="Tf32">Tensor-core TF32, null where there is none.</param>
/// <param name="Fp16">Tensor-core fp16 and bf16 with fp32 accumulation (the same rate on these parts), null where there is none.</param>
/// <param name="BytesPerSecond">Device memory bandwidth, null when unknown (the host's).</param>
/// <param name="Source">Where the figures come from, printed beside them.</param>
public sealed record DevicePeak(string Name, double Fp32, double? Tf32, double? Fp16, double? BytesPerSecond, string Source)
{
    /// <summary>The FLOP peak of <paramref name="precision"/> (fp32, tf32, fp16, bf16); null when the device has no unit for it.</summary>
    public double? Flops(string precision) => precision switch
    {
        "fp32" => Fp32,
        "tf32" => Tf32,
        "fp16" or "bf16" => Fp16,
        _ => throw new ArgumentException($"--precision: unknown precision '{precision}'; choose fp32, tf32, fp16 or bf16"),
    };

    public string Describe(string precision)
    {
        string flops = Flops(precision) is { } f ? (f >= 1e12 ? $"{f / 1e12:F1} TFLOP/s {precision}" : $"{f / 1e9:F0} GFLOP/s {precision}") : $"no {precision} unit";
        string bw = BytesPerSecond is { } b ? $"{b / 1e9:F0} GB/s" : "memory bandwidth n/a";
        return string.Create(CultureInfo.InvariantCulture, $"{Name}: {flops}, {bw} ({Source})");
    }
}

public static class DevicePeaks
{
    const string H100Sheet = "NVIDIA H100 Tensor Core GPU datasheet";
    const string H200Sheet = "NVIDIA H200 Tensor Core GPU datasheet";
    const string A100Sheet = "NVIDIA A100 Tensor Core GPU datasheet";

    // Dense figures: the datasheets print the tensor-core rates "with sparsity", twice these.
    // H100 SXM5: FP32 67 TFLOPS, TF32 989 / 2, FP16 and BF16 1,979 / 2, HBM3 3.35 TB/s.
    // H100 PCIe: FP32 51 TFLOPS, TF32 756 / 2, FP16 and BF16 1,513 / 2, HBM2e 2.0 TB/s.
    // H100 NVL:  FP32 60 TFLOPS, TF32 835 / 2, FP16 and BF16 1,671 / 2, HBM3 3.9 TB/s.
    // H200 SXM:  FP32 67 TFLOPS, TF32 989 / 2, FP16 and BF16 1,979 / 2, HBM3e 4.8 TB/s.
    // H200 NVL:  FP32 60 TFLOPS, TF32 835 / 2, FP16 and BF16 1,671 / 2, HBM3e 4.8 TB/s.
    // A100:      FP32 19.5 TFLOPS, TF32 312 / 2, FP16 and BF16 624 / 2; HBM2e 2,039 GB/s (80 GB SXM), 1,935 GB/s
    //            (80 GB PCIe), HBM2 1,555 GB/s (40 GB, SXM and PCIe).
    static readonly (Func<string, bool> Match, DevicePeak Peak)[] Table =
    [
        (n => n.Contains("H200") && n.Contains("NVL"), new("H200 NVL", 60e12, 417.5e12, 835.5e12, 4.8e12, H200Sheet)),
        (n => n.Contains("H200"), new("H200 SXM", 67e12, 494.5e12, 989.5e12, 4.8e12, H200Sheet)),
        (n => n.Contains("H100") && n.Contains("NVL"), new("H100 NVL", 60e12, 417.5e12, 835.5e12, 3.9e12, H100Sheet)),
        (n => n.Contains("H100") && n.Contains("PCIE"), new("H100 PCIe", 51e12, 378e12, 756.5e12, 2.0e12, H100Sheet)),
        (n => n.Contains("H100"), new("H100 SXM", 67e12, 494.5e12, 989.5e12, 3.35e12, H100Sheet)),
        (n => n.Contains("A100") && n.Contains("80GB") && n.Contains("PCIE"), new("A100 80GB PCIe", 19.5e12, 156e12, 312e12, 1.935e12, A100Sheet)),
        (n => n.Contains("A100") && n.Contains("80GB"), new("A100 80GB SXM", 19.5e12, 156e12, 312e12, 2.039e12, A100Sheet)),
        (n => n.Contains("A100"), new("A100 40GB", 19.5e12, 156e12, 312e12, 1.555e12, A100Sheet)),
    ];

    /// <summary>The datasheet peak of a GPU named <paramref name="deviceName"/> (CUDA's name, e.g. "NVIDIA H100 80GB HBM3"), or null.</summary>
    public static DevicePeak? ForGpu(string deviceName)
    {
        string n = deviceName.ToUpperInvariant().Replace(" ", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal);
        foreach (var (match, peak) in Table)
            if (match(n)) return peak;
        return null;
    }

    /// <summary>The peak of a device: the table for GPUs it knows, the host's FMA peak for the host backend, else null.</summary>
    public static DevicePeak? For(ComputeDevice device) => device.Kind switch
    {
        DeviceKind.Host => Host(),
        DeviceKind.Cuda or DeviceKind.OpenCL => ForGpu(device.Name),
        _ => null, // ILGPU's CPU accelerator simulates a GPU thread by thread: no peak means anything there
    };

    /// <summary>
    /// The host's fp32 FMA peak: physical cores × FMA pipes × SIMD lanes × 2 × clock. Two FMA pipes per core is what
    /// Intel cores since Haswell and AMD cores since Zen 2 have at 256 bits; with AVX-512, Intel server cores have two
    /// 512-bit pipes, while AMD Zen 4 runs a 512-bit FMA as two 256-bit halves, so AMD cores are counted at 256 bits
    /// (Zen 5's full-width pipes are undercounted by half). The clock is cpufreq's maximum when the kernel exposes it, else /proc/cpuinfo's
    /// "cpu MHz" (a VM's nominal clock, without turbo). Memory bandwidth is not measured: n/a.
    /// </summary>
    public static DevicePeak Host()
    {
        var info = ReadCpuInfo();
        int logical = Environment.ProcessorCount;
        int physical = info.Siblings > 0 && info.Cores > 0 && info.Siblings > info.Cores ? Math.Max(1, logical * info.Cores / info.Siblings) : logical;
        bool amd = info.Model.Contains("AMD", StringComparison.OrdinalIgnoreCase);
        int lanes = Vector512.IsHardwareAccelerated && !amd ? 16 : Vector256.IsHardwareAccelerated ? 8 : Vector128.IsHardwareAccelerated ? 4 : 1;
        const int Pipes = 2;
        var (mhz, clockSource) = Clock(info);
        double peak = physical * Pipes * lanes * 2.0 * mhz * 1e6;
        string simd = lanes switch { 16 => "AVX-512", 8 => "AVX2", 4 => "128-bit SIMD", _ => "scalar" };
        string source = string.Create(CultureInfo.InvariantCulture,
            $"{physical} cores x {Pipes} FMA pipes x {lanes} lanes ({simd}{(amd && Vector512.IsHardwareAccelerated ? ", AMD: 512-bit FMA counted as two 256-bit" : "")}) x 2 x {mhz:F0} MHz from {clockSource}");
        return new DevicePeak(info.Model.Length > 0 ? info.Model : "host", peak, null, null, null, source);
    }

    sealed record CpuInfo(string Model, double Mhz, int Siblings, int Cores);

    static CpuInfo ReadCpuInfo()
    {
        string model = "";
        double mhz = 0;
        int siblings = 0, cores = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon < 0) continue;
                string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                if (key == "model name" && model.Length == 0) model = value;
                else if (key == "cpu MHz" && mhz == 0) double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out mhz);
                else if (key == "siblings" && siblings == 0) int.TryParse(value, out siblings);
                else if (key == "cpu cores" && cores == 0) int.TryParse(value, out cores);
                if (line.Length == 0 && model.Length > 0) break; // the first processor's block is enough
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new CpuInfo(model, mhz, siblings, cores);
    }

    static (double Mhz, string Source) Clock(CpuInfo info)
    {
        const string MaxFreq = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
        try
        {
            if (File.Exists(MaxFreq) && double.TryParse(File.ReadAllText(MaxFreq).Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double khz) && khz > 0)
                return (khz / 1e3, MaxFreq);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return info.Mhz > 0 ? (info.Mhz, "/proc/cpuinfo 'cpu MHz'") : (1000, "no clock readable: 1 GHz assumed");
    }
}
