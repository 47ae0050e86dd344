using System.CommandLine;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 selftest`: every ILGPU kernel version against its host twin on the chosen accelerator, so correctness on a
/// GPU machine (which has no .NET SDK to run the test suite) is one command. With --reference, instead, every VGG16
/// tap of the whole network on the chosen device (the host backend too) against PyTorch's, from a file that
/// tools/make_reference.py writes on the same machine (docs/gpu.md).
/// </summary>
static class SelfTestCommand
{
    public static Command Create()
    {
        var full = new Option<bool>("--full") { Description = "Also VGG16's real layer shapes (slow on the CPU simulator)" };
        var reference = new Option<string?>("--reference")
        {
            Description = "Instead: every VGG16 tap on the device against PyTorch's, from a tools/make_reference.py file made with the same weights",
        };
        var weights = CliCommon.Weights("With --reference: the VGG16 weights the reference was made with (safetensors)");
        var command = new Command("selftest", "Check every GPU kernel against the host twin on a device") { full, reference, weights };
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            string choice = parse.GetValue(device.Device)!;
            var precision = device.PrecisionOf(parse);
            device.CheckPrecision(parse);
            if (parse.GetValue(reference) is { } refPath)
                return CompareWithReference(refPath, parse.GetValue(weights), () => device.Open(parse), precision.Name());
            // ILGPU's CPU accelerator simulates 256-thread groups here, so the tiled versions are checked too. It runs when
            // asked, and in place of the host backend (which is the reference itself, not a kernel to check).
            IlgpuDevice gpu;
            if (choice == "ilgpu-cpu") gpu = IlgpuDevice.OpenCpuAccelerator(gpuSizedGroups: true);
            else
            {
                var lines = new List<string>();
                var dev = DeviceCatalog.Open(choice, parse.GetValue(device.Index), lines.Add);
                if (dev is IlgpuDevice opened)
                {
                    foreach (var l in lines) Console.Error.WriteLine(l);
                    gpu = opened;
                }
                else
                {
                    dev.Dispose();
                    // auto's line ends "(auto: no CUDA device; no OpenCL GPU device)": the reasons no GPU was taken.
                    string last = lines.LastOrDefault() ?? "";
                    int at = last.IndexOf("(auto: ", StringComparison.Ordinal);
                    string why = choice == "auto"
                        ? $"no GPU ({(at >= 0 ? last[(at + 7)..^1] : "none found")})"
                        : "--device cpu is the host backend, the reference the kernels are checked against";
                    Console.WriteLine($"selftest: {why}; running the kernels on ILGPU's CPU accelerator instead (slow; it checks the kernels' logic, not a GPU)");
                    gpu = IlgpuDevice.OpenCpuAccelerator(gpuSizedGroups: true);
                }
            }
            using var owned = gpu;
            var results = KernelSelfTest.Run(gpu.Accelerator, quick: !parse.GetValue(full), precision: precision);
            foreach (var r in results) Console.WriteLine(r);
            int failed = results.Count(r => !r.Passed && !r.Skipped), skipped = results.Count(r => r.Skipped);
            Console.WriteLine($"selftest on {gpu.Name}: {results.Count - failed - skipped} passed, {failed} failed" +
                              (skipped > 0 ? $", {skipped} skipped (the SKIP lines say why)" : ""));
            return failed == 0 ? 0 : 1;
        });
        return command;
    }

    /// <summary>
    /// Runs the reference's input through VGG16 on <paramref name="opened"/> and compares every tap; 0 when all pass.
    /// The weights must be the file the reference was made from (its SHA-256 is in the reference's metadata).
    /// </summary>
    static int CompareWithReference(string refPath, string? weightsPath, Func<ComputeDevice> open, string precision)
    {
        using var file = TapComparison.OpenReference(refPath, precision);
        var located = WeightsLocator.Locate(weightsPath)
                      ?? throw new FileNotFoundException($"--reference {refPath}: give the weights it was made with (--weights FILE)");
        if (file.Metadata.TryGetValue("weights_sha256", out var want))
        {
            string have;
            using (var stream = File.OpenRead(located.Path))
                have = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream)).ToLowerInvariant();
            if (!string.Equals(have, want, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"--weights {located.Path} (sha256 {have[..12]}…) is not the file {refPath} was made with (sha256 {want[..Math.Min(12, want.Length)]}…)");
        }
        var shape = file.Info("input").Shape;
        if (shape.Count != 4 || shape[1] != 3)
            throw new InvalidDataException($"{refPath}: 'input' has shape [{string.Join(", ", shape)}], expected (N, 3, H, W)");
        int n = (int)shape[0], h = (int)shape[2], w = (int)shape[3];
        var taps = TapComparison.TapsIn(file);
        var vgg = WeightsLocator.Load(located.Path);
        using var device = open();
        using var model = new ImageModel(device, vgg);
        var t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        var ours = model.Forward(file.ReadFloat32("input"), n, h, w, taps);
        double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
        Console.WriteLine($"VGG16 on {device.Name}, {precision}, batch {n}, {h}x{w} ({seconds:F2} s with the first call's compilation), " +
                          $"against {Path.GetFileName(refPath)} ({file.Metadata.GetValueOrDefault("torch_device", "cpu")}, torch {file.Metadata.GetValueOrDefault("torch_version", "?")}): " +
                          "max |ours - torch fp32| / max |torch fp32| per tap");
        var errors = TapComparison.CompareAll(file, ours, precision);
        foreach (var e in errors) Console.WriteLine("  " + e);
        int failed = errors.Count(e => !e.Passed);
        Console.WriteLine($"selftest --reference on {device.Name} ({precision}): {errors.Count - failed} taps passed, {failed} failed; " +
                          $"worst {errors.MaxBy(e => e.Relative)?.Tap} at {errors.Max(e => e.Relative):E2}");
        return failed == 0 ? 0 : 1;
    }
}
