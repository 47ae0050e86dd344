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
            // On ILGPU's CPU accelerator, simulate 256-thread groups so the tiled versions are checked too.
            using var dev = parse.GetValue(device.Device) == "ilgpu-cpu"
                ? IlgpuDevice.OpenCpuAccelerator(gpuSizedGroups: true)
                : device.Open(parse);
            if (dev is not IlgpuDevice gpu)
                throw new ArgumentException("selftest checks ILGPU kernels: use --device cuda, opencl or ilgpu-cpu (the host backend is the reference itself)");
            var results = KernelSelfTest.Run(gpu.Accelerator, quick: !parse.GetValue(full));
            foreach (var r in results) Console.WriteLine(r);
            int failed = results.Count(r => !r.Passed);
            Console.WriteLine($"selftest on {dev.Name}: {results.Count - failed} passed, {failed} failed");
            return failed == 0 ? 0 : 1;
        });
        return command;
    }
}
