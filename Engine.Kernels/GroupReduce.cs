using ILGPU;

namespace Tp7.Engine.Kernels;

/// <summary>
/// Tree reductions over one group through shared memory (group size a power of two, <c>red</c> at least that long),
/// the row reductions of the softmax and softmax-cross-entropy kernels. Every thread gets the result; a barrier at
/// the end lets the caller reuse <c>red</c>.
/// </summary>
internal static class GroupReduce
{
    public static float Max(ArrayView<float> red, float value)
    {
        int t = Group.IdxX;
        red[t] = value;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (t < half) red[t] = MathF.Max(red[t], red[t + half]);
            Group.Barrier();
        }
        float result = red[0];
        Group.Barrier();
        return result;
    }

    public static float Sum(ArrayView<float> red, float value)
    {
        int t = Group.IdxX;
        red[t] = value;
        Group.Barrier();
        for (int half = Group.DimX / 2; half > 0; half /= 2)
        {
            if (t < half) red[t] += red[t + half];
            Group.Barrier();
        }
        float result = red[0];
        Group.Barrier();
        return result;
    }
}
