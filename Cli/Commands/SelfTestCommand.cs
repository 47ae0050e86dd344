using System.CommandLine;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 selftest`: every ILGPU kernel version against its host twin on the chosen accelerator, so correctness on a
/// GPU machine (which has no .NET SDK to run the test suite) is one command.
/// </summary>
static class SelfTestCommand
{
    public static Command Create()
    {
        var full = new Option<bool>("--full") { Description = "Also VGG16's real layer shapes (slow on the CPU simulator)" };
        var command = new Command("selftest", "Check every GPU kernel against the host twin on a device") { full };
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            string choice = parse.GetValue(device.Device)!;
            var precision = device.PrecisionOf(parse);
            device.CheckPrecision(parse);
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
            if (skipped > 0) Console.WriteLine($"selftest: {skipped} version(s) skipped on {gpu.Name} (SKIP lines above say why)");
            Console.WriteLine($"selftest on {gpu.Name}: {results.Count - failed - skipped} passed, {failed} failed");
            return failed == 0 ? 0 : 1;
        });
        return command;
    }
}
