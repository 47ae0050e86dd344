using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Devices;

/// <summary>One device found on this machine, usable or refused (with the reason).</summary>
public sealed record DeviceEntry(string Backend, int Index, string Name, long MemoryBytes, string Capability, string? RefusedBecause);

/// <summary>
/// Finds devices and opens the one a verb asked for. `auto` takes CUDA, then an OpenCL GPU, then the host backend.
/// </summary>
public static class DeviceCatalog
{
    public static readonly string[] Choices = ["auto", "cuda", "opencl", "cpu", "ilgpu-cpu"];

    /// <summary>Every device: the host backend, each CUDA and OpenCL device (refused ones with the reason).</summary>
    public static IReadOnlyList<DeviceEntry> List()
    {
        var list = new List<DeviceEntry>();
        using (var host = new HostDevice())
            list.Add(new("cpu", 0, host.Name, host.MemoryBytes, $"{Environment.ProcessorCount} cores, {HostInfo.SimdDescription()}", null));
        OpenCl.UseVersionedIcdLoader();
        using var ctx = Context.Create(b => b.Cuda().OpenCL(_ => true));
        int ci = 0, oi = 0;
        foreach (var d in ctx.Devices)
        {
            switch (d)
            {
                case CudaDevice cuda:
                    list.Add(new("cuda", ci++, cuda.Name, cuda.MemorySize, CudaCapability(cuda), null));
                    break;
                case CLDevice cl:
                    var refusal = OpenCl.Refusal(cl, OpenCl.PoclOptedIn);
                    string adapted = refusal == null && !cl.Capabilities.GenericAddressSpace
                        ? $", generic pointers compiled as global ({OpenCl.PoclOptIn}=1; kernels with atomics do not build)" : "";
                    list.Add(new("opencl", oi++, cl.Name, cl.MemorySize,
                        $"{cl.DeviceType.ToString().Replace("CL_DEVICE_TYPE_", "")}, {cl.VendorName}, OpenCL {cl.DeviceVersion} (C {cl.CVersion}){adapted}", refusal));
                    break;
            }
        }
        list.Add(new("ilgpu-cpu", 0, "ILGPU CPU accelerator (kernel debugger, ~0.1 GFLOP/s)", 0, "simulated GPU", null));
        return list;
    }

    static string CudaCapability(CudaDevice d)
        => d.Architecture is { } a ? $"compute capability {a.Major}.{a.Minor}, {d.NumMultiprocessors} SMs" : $"{d.NumMultiprocessors} SMs";

    public static string Describe(Device d) => d switch
    {
        CudaDevice c => $"CUDA: {c.Name}, {c.MemorySize >> 20} MiB, {CudaCapability(c)}",
        CLDevice cl => $"OpenCL: {cl.Name} ({cl.VendorName}), {cl.MemorySize >> 20} MiB" +
                       (OpenCl.UsesGlobalPointers(cl) ? $", generic pointers compiled as global ({OpenCl.PoclOptIn}=1)" : ""),
        CPUDevice cpu => $"ILGPU CPU accelerator: {cpu.NumMultiprocessors} simulated SM, {cpu.MaxNumThreadsPerGroup} threads per group",
        _ => d.Name,
    };

    /// <summary>
    /// Opens the device a verb asked for and says on <paramref name="log"/> which one and why. With
    /// <paramref name="profiling"/>, ILGPU contexts are built with profiling so launches can be timed by device events.
    /// </summary>
    public static ComputeDevice Open(string choice, int index, Action<string> log, bool profiling = false)
    {
        Action<Context.Builder> Profiled(Action<Context.Builder> configure) => b => { configure(b); if (profiling) b.Profiling(); };
        OpenCl.UseVersionedIcdLoader();
        switch (choice.ToLowerInvariant())
        {
            case "cpu":
            {
                var host = new HostDevice();
                log($"device: {host.Describe()}");
                return host;
            }
            case "ilgpu-cpu":
            {
                // ILGPU's default 16-thread groups: the naive kernels, which run a whole VGG16 in seconds there
                // (`tp7 selftest` opens the 256-thread simulator itself to cover the tiled versions).
                var dev = IlgpuDevice.OpenCpuAccelerator(profiling: profiling);
                log($"device: {dev.Describe()} (debugging only: far slower than --device cpu)");
                return dev;
            }
            case "cuda":
                return OpenIlgpu(Profiled(b => b.Cuda()), "CUDA", index, log)
                       ?? throw new InvalidOperationException($"no CUDA device with index {index} (see 'tp7 devices')");
            case "opencl":
                return OpenIlgpu(Profiled(b => b.OpenCL(OpenCl.Admit)), "OpenCL", index, log)
                       ?? throw new InvalidOperationException($"no usable OpenCL device with index {index} (see 'tp7 devices')");
            case "auto":
            {
                var reasons = new List<string>();
                if (TryOpen(Profiled(b => b.Cuda()), "CUDA", index, log, reasons) is { } cuda) return cuda;
                if (TryOpen(Profiled(b => b.OpenCL(d => d.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU && OpenCl.Admit(d))),
                        "OpenCL GPU", index, log, reasons) is { } cl) return cl;
                var host = new HostDevice();
                log($"device: {host.Describe()} (auto: {string.Join("; ", reasons)})");
                return host;
            }
            default:
                throw new ArgumentException($"unknown device '{choice}'; choose one of {string.Join(", ", Choices)}");
        }
    }

    static ComputeDevice? TryOpen(Action<Context.Builder> configure, string what, int index, Action<string> log, List<string> reasons)
    {
        try
        {
            var dev = OpenIlgpu(configure, what, index, log);
            if (dev == null) reasons.Add($"no {what} device");
            return dev;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            reasons.Add($"{what} failed: {e.Message}");
            return null;
        }
    }

    static IlgpuDevice? OpenIlgpu(Action<Context.Builder> configure, string what, int index, Action<string> log)
    {
        var ctx = Context.Create(b => { configure(b); b.EnableAlgorithms(); });
        var devices = ctx.Devices.Where(d => d.AcceleratorType != AcceleratorType.CPU).ToList();
        if (index < 0 || index >= devices.Count) { ctx.Dispose(); return null; }
        var dev = new IlgpuDevice(ctx, devices[index], ownsContext: true);
        log($"device: {dev.Describe()}");
        return dev;
    }
}
