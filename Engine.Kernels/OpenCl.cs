using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

namespace Tp7.Engine.Kernels;

/// <summary>
/// Which OpenCL devices ILGPU's OpenCL backend runs on, and the one adaptation we make for PoCL, the portable CPU
/// implementation CI tests the kernels on.
/// <para>
/// ILGPU keeps every <c>ArrayView</c> as a pointer in OpenCL C's generic address space (the typedef
/// <c>__generic float*</c> in each kernel it writes), so it refuses devices without that optional OpenCL 3.0 feature.
/// PoCL 3.1 (Debian 12) reports OpenCL 3.0 without it (<c>CL_DEVICE_GENERIC_ADDRESS_SPACE_SUPPORT</c> = false), and its
/// compiler, clang 15 with <c>-cl-ext=-all,+features</c>, rejects <c>__generic</c>. Views handed to a kernel are
/// buffers in global memory, and ILGPU types shared-memory views as <c>local</c> pointers of their own, so with
/// <see cref="PoclOptIn"/> set we ask PoCL to compile <c>__generic</c> as <c>__global</c>
/// (<c>POCL_EXTRA_BUILD_FLAGS=-D__generic=__global</c>) and tell ILGPU the device can run it. OpenCL C forbids casts
/// between named address spaces, so a kernel that ever put a local or private pointer in a view fails to build
/// instead of running wrong. What does not build: ILGPU's atomics, which cast to unqualified <c>atomic_uint*</c>
/// (private once there is no generic space); <see cref="KernelLoading"/> turns such a kernel into a launcher that
/// throws <see cref="KernelNotBuiltException"/> with PoCL's message.
/// </para>
/// </summary>
public static class OpenCl
{
    /// <summary>The opt-in: <c>TP7_POCL_GLOBAL_POINTERS=1</c> runs ILGPU's kernels on PoCL as described above.</summary>
    public const string PoclOptIn = "TP7_POCL_GLOBAL_POINTERS";

    const string PoclPlatformName = "Portable Computing Language";
    const string PoclBuildFlagsVariable = "POCL_EXTRA_BUILD_FLAGS";
    const string GenericAsGlobal = "-D__generic=__global";

    static readonly ConcurrentDictionary<IntPtr, bool> adaptedDevices = new();
    static int loaderRegistered;

    /// <summary>Whether <see cref="PoclOptIn"/> is set to 1 in this process's environment.</summary>
    public static bool PoclOptedIn => Environment.GetEnvironmentVariable(PoclOptIn) == "1";

    /// <summary>
    /// ILGPU imports the OpenCL ICD loader as "OpenCL", which .NET looks for as libOpenCL.so; Debian and Ubuntu put
    /// that name only in ocl-icd-opencl-dev, and ship libOpenCL.so.1 in the runtime package. Without this fallback a
    /// machine with a working OpenCL runtime shows no OpenCL device at all. Idempotent.
    /// </summary>
    public static void UseVersionedIcdLoader()
    {
        if (Interlocked.Exchange(ref loaderRegistered, 1) == 1) return;
        var ilgpu = typeof(CLAccelerator).Assembly;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (assembly, name) =>
            assembly == ilgpu && name == "OpenCL" && OperatingSystem.IsLinux()
            && NativeLibrary.TryLoad("libOpenCL.so.1", out var handle) ? handle : IntPtr.Zero;
    }

    public static bool IsPocl(CLDevice d) => d.PlatformName.Contains(PoclPlatformName, StringComparison.Ordinal);

    /// <summary>True for a PoCL device that runs ILGPU's kernels through the adaptation above.</summary>
    public static bool UsesGlobalPointers(Device d) => d is CLDevice cl && adaptedDevices.ContainsKey(cl.DeviceId);

    /// <summary>Why ILGPU will not run on this OpenCL device (with <paramref name="optedIn"/> as the opt-in), or null when it will.</summary>
    public static string? Refusal(CLDevice d, bool optedIn)
    {
        if (d.CLStdVersion < CLBackend.MinimumVersion)
            return $"OpenCL C {d.CLStdVersion} is older than the {CLBackend.MinimumVersion} ILGPU needs";
        if (d.Capabilities.GenericAddressSpace) return null;
        if (!IsPocl(d)) return "no generic address space support, which ILGPU requires";
        return optedIn ? null
            : $"no generic address space support, which ILGPU requires (PoCL: {PoclOptIn}=1 compiles ILGPU's generic pointers as global ones, kernels with atomics excepted)";
    }

    /// <summary>
    /// The device filter for <c>Context.Builder.OpenCL</c>: admits the devices ILGPU runs on, and a PoCL device when
    /// <see cref="PoclOptedIn"/> (adapting it then; ILGPU checks the capability when the accelerator is created).
    /// </summary>
    public static bool Admit(CLDevice d) => Admit(d, PoclOptedIn);

    /// <summary><see cref="Admit(CLDevice)"/> with the PoCL opt-in given here rather than read from the environment.</summary>
    public static bool Admit(CLDevice d, bool poclOptIn)
    {
        if (Refusal(d, poclOptIn) != null) return false;
        if (!d.Capabilities.GenericAddressSpace) AdaptPocl(d);
        return true;
    }

    static void AdaptPocl(CLDevice d)
    {
        // PoCL reads its variables with getenv when it builds a program, and .NET's Environment.SetEnvironmentVariable
        // does not reach the native environment on Unix.
        string current = Environment.GetEnvironmentVariable(PoclBuildFlagsVariable) ?? "";
        if (!current.Contains(GenericAsGlobal, StringComparison.Ordinal))
        {
            string flags = (current + " " + GenericAsGlobal).Trim();
            if (setenv(PoclBuildFlagsVariable, flags, 1) != 0)
                throw new InvalidOperationException($"{PoclOptIn}: could not set {PoclBuildFlagsVariable} for PoCL");
            Environment.SetEnvironmentVariable(PoclBuildFlagsVariable, flags);
        }
        // ILGPU 1.5.3 sets this capability from the device query only (internal setter).
        var property = typeof(CLCapabilityContext).GetProperty(nameof(CLCapabilityContext.GenericAddressSpace))
                       ?? throw new InvalidOperationException($"{PoclOptIn}: this ILGPU version has no GenericAddressSpace capability");
        var setter = property.GetSetMethod(nonPublic: true)
                     ?? throw new InvalidOperationException($"{PoclOptIn}: this ILGPU version's GenericAddressSpace capability cannot be set");
        setter.Invoke(d.Capabilities, [true]);
        adaptedDevices[d.DeviceId] = true;
    }

    /// <summary>PoCL's build log for <paramref name="kernel"/> on <paramref name="acc"/>: its first error line, or why none came.</summary>
    internal static string BuildError(CLAccelerator acc, MethodInfo kernel)
    {
        using var backend = new CLBackend(acc.Context, acc.Capabilities, acc.Vendor, acc.CLStdVersion);
        var entry = ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        var compiled = (CLCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        var name = System.Text.RegularExpressions.Regex.Match(compiled.Source, @"kernel\s+void\s+(\w+)\s*\(").Groups[1].Value;
        var error = CLKernel.LoadKernel(acc, name, compiled.Source, compiled.CVersion, out _, out _, out var log);
        if (error == CLError.CL_SUCCESS)
        {
            return "it builds when compiled again; the first failure was not a build error";
        }
        var first = (log ?? "").Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("error:", StringComparison.Ordinal));
        // PoCL names a temporary file; the line and column after it are what helps.
        return first == null ? $"{error}" : System.Text.RegularExpressions.Regex.Replace(first, @"\S+/tempfile_\w+\.cl:", "");
    }

    [DllImport("libc", SetLastError = true)]
    static extern int setenv(string name, string value, int overwrite);
}

/// <summary>A kernel this accelerator's compiler did not build (see <see cref="OpenCl"/>): launching it throws this.</summary>
public sealed class KernelNotBuiltException(string message) : NotSupportedException(message);
