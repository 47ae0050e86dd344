using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

namespace Tp7.Engine.Kernels;

/// <summary>
/// The one place the op families' kernels are loaded. These methods have ILGPU's names and signatures
/// (<c>accelerator.LoadStreamKernel&lt;...&gt;(Kernel)</c>) and live in this namespace, so C# binds the op families'
/// calls here before it looks at ILGPU's extension methods in the imported namespaces: a kernel added in any op
/// family comes through here without a change at its call site. Everywhere but a PoCL device adapted by
/// <see cref="OpenCl"/> they are ILGPU's loader unchanged. On such a device a kernel PoCL cannot build (ILGPU's atomics)
/// does not fail its op family's constructor, which would take every other kernel of the family with it: it becomes a
/// launcher that throws <see cref="KernelNotBuiltException"/> with the compiler's first error.
/// </summary>
internal static class KernelLoading
{
    public static Action<KernelConfig, T1> LoadStreamKernel<T1>(this Accelerator accelerator, Action<T1> kernel) where T1 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _) => throw e);

    public static Action<KernelConfig, T1, T2> LoadStreamKernel<T1, T2>(this Accelerator accelerator, Action<T1, T2> kernel) where T1 : struct where T2 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3> LoadStreamKernel<T1, T2, T3>(this Accelerator accelerator, Action<T1, T2, T3> kernel) where T1 : struct where T2 : struct where T3 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4> LoadStreamKernel<T1, T2, T3, T4>(this Accelerator accelerator, Action<T1, T2, T3, T4> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5> LoadStreamKernel<T1, T2, T3, T4, T5>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6> LoadStreamKernel<T1, T2, T3, T4, T5, T6>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> LoadStreamKernel<T1, T2, T3, T4, T5, T6, T7>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> LoadStreamKernel<T1, T2, T3, T4, T5, T6, T7, T8>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> LoadStreamKernel<T1, T2, T3, T4, T5, T6, T7, T8, T9>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> LoadStreamKernel<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _, _, _, _, _, _) => throw e);

    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11> LoadStreamKernel<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11>(this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11> kernel) where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct where T7 : struct where T8 : struct where T9 : struct where T10 : struct where T11 : struct
        => Load(accelerator, kernel, () => KernelLoaders.LoadStreamKernel(accelerator, kernel), e => (_, _, _, _, _, _, _, _, _, _, _, _) => throw e);

    static TDelegate Load<TDelegate>(Accelerator accelerator, Delegate kernel, Func<TDelegate> load, Func<Exception, TDelegate> refuse)
    {
        if (!OpenCl.UsesGlobalPointers(accelerator.Device) || accelerator is not CLAccelerator cl) return load();
        try
        {
            return load();
        }
        catch (CLException e)
        {
            MethodInfo method = kernel.Method;
            return refuse(new KernelNotBuiltException(
                $"{method.DeclaringType?.Name}.{method.Name} does not build on {accelerator.Name} without the generic address space " +
                $"({OpenCl.PoclOptIn}): {OpenCl.BuildError(cl, method)} ({e.Error})"));
        }
    }
}
