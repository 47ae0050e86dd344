using System.CommandLine;
using ILGPU.Runtime.Cuda;
using Tp7.Engine.Kernels;

namespace Tp7.Cli;

/// <summary>
/// --precision on every verb that computes (it comes with <see cref="DeviceOptions"/>). fp32 is the default and
/// strict; tf32, fp16 and bf16 round the inputs of the forward matrix products on tensor cores, which only CUDA GPUs
/// of compute capability 8.0 or newer have. A device that cannot is refused before any work: --device cpu, opencl
/// and ilgpu-cpu while parsing, auto and cuda by looking at the CUDA devices before anything is read.
/// </summary>
static class PrecisionOption
{
    public static Option<string> Create() => new("--precision")
    {
        Description = "fp32 (default, strict IEEE), tf32, fp16 or bf16: inputs of convolutions and linear layers rounded to it on " +
                      "tensor cores, fp32 accumulation (CUDA GPUs of compute capability 8.0 or newer)",
        DefaultValueFactory = _ => "fp32",
    };

    /// <summary>The value must be a precision, and a precision other than fp32 needs a device that can be CUDA.</summary>
    public static void AddChecks(Command command, Option<string> precision, Option<string> device)
    {
        precision.Validators.Add(r =>
        {
            string v = r.GetValueOrDefault<string>() ?? "";
            if (Precisions.Parse(v) == null) r.AddError($"--precision: '{v}' is not one of {string.Join(", ", Precisions.Names)}");
        });
        command.Validators.Add(r =>
        {
            if (Precisions.Parse(r.GetValue(precision) ?? "fp32") is not { } p || p == Precision.Fp32) return;
            string d = r.GetValue(device) ?? "auto";
            if (d is "cpu" or "opencl" or "ilgpu-cpu") r.AddError(Refusal(p, $"--device {d} computes in fp32"));
        });
    }

    public static string Refusal(Precision p, string why) => $"--precision {p.Name()} needs a CUDA GPU of compute capability 8.0 or newer; {why}";

    /// <summary>
    /// For --device auto or cuda with a precision other than fp32: the CUDA device that would be opened must have
    /// tensor cores. Asks the driver for its devices only (no accelerator is created), so it costs nothing beside a
    /// dataset listing or a weights file.
    /// </summary>
    public static void CheckCudaDevice(Precision p, string device, int index)
    {
        if (p == Precision.Fp32) return;
        using var context = ILGPU.Context.Create(b => b.Cuda());
        var cuda = context.Devices.OfType<ILGPU.Runtime.Cuda.CudaDevice>().ToList();
        if (index >= cuda.Count)
            throw new ArgumentException(Refusal(p, cuda.Count == 0
                ? $"--device {device} found no CUDA device here, and the host backend and OpenCL compute in fp32"
                : $"there is no CUDA device {index} (see 'tp7 devices')"));
        var d = cuda[index];
        if (d.Architecture is not { } arch || arch < Precisions.MinimumArchitecture)
            throw new ArgumentException(Refusal(p, $"{d.Name} has compute capability {(d.Architecture is { } a ? $"{a.Major}.{a.Minor}" : "unknown")}"));
    }
}
