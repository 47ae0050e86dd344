using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;
using Tp7.Engine.Devices;
using Tp7.Engine.Kernels;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestFramework("Tp7.Tests.Infrastructure.BackendTestFramework", "Tp7.Tests")]

namespace Tp7.Tests.Infrastructure
{

/// <summary>
/// Every test of the class needs this backend ("opencl"). Where it is missing, each of its tests is reported skipped
/// with the reason (xunit 2 has no skip from inside a test), so a machine without the backend shows what did not run.
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class RequiresBackendAttribute(string backend) : Attribute
{
    public string Backend => backend;
}

/// <summary>
/// The test launches a kernel that uses ILGPU's atomics, which PoCL cannot build without the generic address space
/// (see <see cref="OpenCl"/>): skipped with that reason on such a device, run everywhere else.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class UsesAtomicsAttribute : Attribute;

/// <summary>The backends a test class can require, and why one is not here.</summary>
public static class Backends
{
    /// <summary>What tools/test.sh installs so that CI runs the OpenCL tests.</summary>
    public const string PoclPackages = "pocl-opencl-icd ocl-icd-libopencl1";

    static readonly Lazy<(string? Missing, bool GlobalPointers)> openCl = new(ProbeOpenCl);

    /// <summary>Why no OpenCL device runs ILGPU's kernels here, or null when one does.</summary>
    public static string? OpenClMissing => openCl.Value.Missing;

    /// <summary>True when the OpenCL device is PoCL run through <see cref="OpenCl"/>'s global-pointer adaptation.</summary>
    public static bool OpenClUsesGlobalPointers => openCl.Value.GlobalPointers;

    public static string? Missing(string backend) => backend switch
    {
        "opencl" => OpenClMissing,
        _ => $"unknown backend '{backend}'",
    };

    /// <summary>
    /// The tests opt in to PoCL themselves (<see cref="OpenCl.Admit(CLDevice, bool)"/> with true): the adaptation is
    /// what they check, and `tp7 devices` in the same process still reports PoCL refused without the variable.
    /// </summary>
    public static Context CreateOpenClContext()
    {
        OpenCl.UseVersionedIcdLoader();
        return Context.Create(b => b.OpenCL(d => OpenCl.Admit(d, poclOptIn: true)).EnableAlgorithms());
    }

    static (string?, bool) ProbeOpenCl()
    {
        try
        {
            OpenCl.UseVersionedIcdLoader();
            using var all = Context.Create(b => b.OpenCL(_ => true));
            var found = all.Devices.OfType<CLDevice>().ToList();
            if (found.Count == 0)
                return ($"no OpenCL device (tools/test.sh installs PoCL: apt-get install {PoclPackages})", false);
            var usable = found.FirstOrDefault(d => OpenCl.Refusal(d, optedIn: true) == null);
            if (usable == null)
                return ("no OpenCL device ILGPU runs on: " + string.Join("; ", found.Select(d => $"{d.Name}: {OpenCl.Refusal(d, true)}")), false);
            return (null, !usable.Capabilities.GenericAddressSpace);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or CLException)
        {
            return ($"no OpenCL runtime ({e.GetType().Name}: {e.Message}; tools/test.sh installs {PoclPackages})", false);
        }
    }
}

/// <summary>xunit's framework, with <see cref="RequiresBackendAttribute"/> and <see cref="UsesAtomicsAttribute"/> read at discovery.</summary>
public sealed class BackendTestFramework(IMessageSink messageSink) : XunitTestFramework(messageSink)
{
    protected override ITestFrameworkDiscoverer CreateDiscoverer(IAssemblyInfo assemblyInfo)
        => new Discoverer(assemblyInfo, SourceInformationProvider, DiagnosticMessageSink);

    sealed class Discoverer(IAssemblyInfo assembly, ISourceInformationProvider source, IMessageSink sink)
        : XunitTestFrameworkDiscoverer(assembly, source, sink)
    {
        protected override bool FindTestsForMethod(ITestMethod testMethod, bool includeSourceInformation, IMessageBus messageBus,
            ITestFrameworkDiscoveryOptions discoveryOptions)
        {
            string? reason = SkipReason(testMethod);
            if (reason == null || !testMethod.Method.GetCustomAttributes(typeof(FactAttribute)).Any())
                return base.FindTestsForMethod(testMethod, includeSourceInformation, messageBus, discoveryOptions);
            var skipped = new XunitSkippedDataRowTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(),
                discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, reason);
            return ReportDiscoveredTestCase(skipped, includeSourceInformation, messageBus);
        }

        static string? SkipReason(ITestMethod testMethod)
        {
            var required = testMethod.TestClass.Class.GetCustomAttributes(typeof(RequiresBackendAttribute)).FirstOrDefault();
            if (required == null) return null;
            string backend = (string)required.GetConstructorArguments().First();
            if (Backends.Missing(backend) is { } missing) return $"{backend}: {missing}";
            if (backend == "opencl" && Backends.OpenClUsesGlobalPointers && testMethod.Method.GetCustomAttributes(typeof(UsesAtomicsAttribute)).Any())
                return "opencl: ILGPU's atomics do not build on PoCL without the generic address space (see OpenCl in Engine.Kernels)";
            return null;
        }
    }
}

}

namespace Tp7.Tests
{
using Tp7.Tests.Infrastructure;

/// <summary>
/// One ILGPU accelerator for a whole test class and the op objects, whose kernels compile once. Each backend's
/// fixture derives from this; test classes take it and run the same bodies on every backend.
/// </summary>
public abstract class AcceleratorFixture : IDisposable
{
    public abstract string Backend { get; }
    public Context Context { get; private set; } = null!;
    public Accelerator Accelerator { get; private set; } = null!;
    public GemmGpu Gemm { get; private set; } = null!;
    public LinearGpu Linear { get; private set; } = null!;
    public Conv2dGpu Conv { get; private set; } = null!;
    public PoolingGpu Pool { get; private set; } = null!;
    public ActivationsGpu Act { get; private set; } = null!;
    public DropoutGpu Drop { get; private set; } = null!;
    public LossGpu CrossEntropy { get; private set; } = null!;
    public OptimizersGpu Optim { get; private set; } = null!;

    /// <summary>A device for the graph executor on this backend (its own accelerator; the caller disposes it).</summary>
    public abstract IlgpuDevice OpenDevice();

    protected void Open(Context context, Device device)
    {
        Context = context;
        Accelerator = device.CreateAccelerator(context);
        Gemm = new GemmGpu(Accelerator);
        Linear = new LinearGpu(Accelerator);
        Conv = new Conv2dGpu(Accelerator);
        Pool = new PoolingGpu(Accelerator);
        Act = new ActivationsGpu(Accelerator);
        Drop = new DropoutGpu(Accelerator);
        CrossEntropy = new LossGpu(Accelerator);
        Optim = new OptimizersGpu(Accelerator);
    }

    public void Dispose()
    {
        Gemm?.Dispose();
        Linear?.Dispose();
        Accelerator?.Dispose();
        Context?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>ILGPU's CPU accelerator simulating 256-thread groups (<see cref="Accelerators.CpuSimulatorDevice"/>).</summary>
public sealed class CpuSimulatorFixture : AcceleratorFixture
{
    public override string Backend => "ilgpu-cpu";

    public CpuSimulatorFixture()
    {
        var context = Accelerators.CreateCpuSimulatorContext();
        Open(context, context.GetPreferredDevice(preferCPU: true));
    }

    /// <summary>ILGPU's default 16-thread groups: the naive versions, fast enough for whole graphs.</summary>
    public override IlgpuDevice OpenDevice() => IlgpuDevice.OpenCpuAccelerator();
}

/// <summary>
/// The first OpenCL device ILGPU runs on (in CI: PoCL, adapted by <see cref="OpenCl"/>). Opens nothing when there is
/// none; the classes that take it carry <see cref="RequiresBackendAttribute"/>, so their tests are skipped then.
/// </summary>
public sealed class OpenClFixture : AcceleratorFixture
{
    public override string Backend => "opencl";

    public OpenClFixture()
    {
        if (Backends.OpenClMissing != null) return;
        var context = Backends.CreateOpenClContext();
        Open(context, context.GetCLDevices()[0]);
    }

    public override IlgpuDevice OpenDevice()
    {
        var context = Backends.CreateOpenClContext();
        return new IlgpuDevice(context, context.GetCLDevices()[0], ownsContext: true);
    }
}
}
