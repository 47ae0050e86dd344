using System.Text;
using Tp7.Engine.IO;

namespace Tp7.Tests;

public sealed class NpyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tp7-npy-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void RoundTripFloat32Matrix()
    {
        var rng = new Random(1);
        var data = new float[7 * 13];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1) * 1e3f;
        data[5] = float.Epsilon; data[6] = -0f; data[7] = float.MaxValue;
        Npy.Write(P("a.npy"), data, 7, 13);
        var (back, shape) = Npy.ReadFloat32(P("a.npy"));
        Assert.Equal([7L, 13L], shape);
        Assert.Equal(data, back);
        Assert.True(BitConverter.SingleToInt32Bits(back[6]) == BitConverter.SingleToInt32Bits(-0f));
        // Header + data, header padded to 64 bytes as NumPy does.
        Assert.Equal(0, Npy.ReadHeader(P("a.npy")).DataOffset % 64);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void RoundTripIntegerLabelsAndOverwrite()
    {
        long[] labels = [3, -1, long.MaxValue, 0];
        Npy.Write(P("y.npy"), labels);
        Assert.Equal(labels, Npy.ReadInt64(P("y.npy")).Data);
        int[] small = [4, 2, 9];
        Npy.Write(P("y.npy"), small);   // overwrite in place through the temp + rename
        var (d32, shape) = Npy.ReadInt32(P("y.npy"));
        Assert.Equal(small, d32);
        Assert.Equal([3L], shape);
        Assert.Equal(Npy.DType.Int32, Npy.ReadHeader(P("y.npy")).DType);
        Assert.Throws<InvalidDataException>(() => { Npy.Write(P("big.npy"), labels); Npy.ReadInt32(P("big.npy")); });
    }

    [Fact]
    public void ReadsFilesWrittenByNumpy()
    {
        string script = """
            import sys, numpy as np
            from numpy.lib import format as F
            d = sys.argv[1]
            a = (np.arange(6 * 5, dtype=np.float32).reshape(6, 5) - 7.25) / 3
            np.save(d + '/f4.npy', a)
            np.save(d + '/f8.npy', a.astype(np.float64) * 1e-3)
            np.save(d + '/i8.npy', np.array([5, -2, 2**40], dtype=np.int64))
            np.save(d + '/i4.npy', np.array([7, 0, -9], dtype=np.int32))
            np.save(d + '/f4big.npy', np.zeros((0, 3), dtype=np.float32))
            for v in [(2, 0), (3, 0)]:
                with open(d + '/v%d.npy' % v[0], 'wb') as f:
                    F.write_array(f, a, version=v)
            np.save(d + '/fortran.npy', np.asfortranarray(a))
            np.save(d + '/be.npy', a.astype('>f4'))
            np.save(d + '/u2.npy', np.arange(3, dtype=np.uint16))
            """;
        ReferenceTools.RunPython(script, _dir);

        var expected = Enumerable.Range(0, 30).Select(i => (i - 7.25f) / 3).ToArray();
        var (f4, s4) = Npy.ReadFloat32(P("f4.npy"));
        Assert.Equal([6L, 5L], s4);
        Assert.Equal(expected, f4);
        var (f8, s8) = Npy.ReadFloat64(P("f8.npy"));
        Assert.Equal([6L, 5L], s8);
        for (int i = 0; i < 30; i++) Assert.Equal((double)expected[i] * 1e-3, f8[i], 15);
        Assert.Equal((float)((double)expected[4] * 1e-3), Npy.ReadFloat32(P("f8.npy")).Data[4]);
        Assert.Equal([5L, -2L, 1L << 40], Npy.ReadInt64(P("i8.npy")).Data);
        Assert.Equal([7, 0, -9], Npy.ReadInt32(P("i4.npy")).Data);
        Assert.Equal([7L, 0L, -9L], Npy.ReadInt64(P("i4.npy")).Data);
        var (empty, se) = Npy.ReadFloat32(P("f4big.npy"));
        Assert.Empty(empty);
        Assert.Equal([0L, 3L], se);
        Assert.Equal(expected, Npy.ReadFloat32(P("v2.npy")).Data);
        Assert.Equal(expected, Npy.ReadFloat32(P("v3.npy")).Data);

        Assert.Contains("fortran_order", Assert.Throws<InvalidDataException>(() => Npy.ReadFloat32(P("fortran.npy"))).Message);
        Assert.Contains("'>f4'", Assert.Throws<InvalidDataException>(() => Npy.ReadFloat32(P("be.npy"))).Message);
        Assert.Contains("'<u2'", Assert.Throws<InvalidDataException>(() => Npy.ReadInt64(P("u2.npy"))).Message);
    }

    [Fact]
    public void NumpyReadsOurFiles()
    {
        var a = new float[] { 1.5f, -2.25f, 3e-8f, 4e7f, 0, -1 };
        Npy.Write(P("ours.npy"), a, 2, 3);
        Npy.Write(P("ours_i8.npy"), new long[] { 9, -8 });
        string outText = ReferenceTools.RunPython("""
            import sys, numpy as np
            a = np.load(sys.argv[1] + '/ours.npy'); b = np.load(sys.argv[1] + '/ours_i8.npy')
            print(a.dtype.str, a.shape, a.flags['C_CONTIGUOUS'], a.tobytes().hex(), b.dtype.str, b.tolist())
            """, _dir);
        string hex = Convert.ToHexStringLower(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
        Assert.Equal($"<f4 (2, 3) True {hex} <i8 [9, -8]", outText.Trim());
    }

    [Fact]
    public void HostileFilesGiveOneLineErrorsNamingTheFile()
    {
        void Expect(string name, byte[] bytes, string fragment)
        {
            File.WriteAllBytes(P(name), bytes);
            var e = Assert.ThrowsAny<Exception>(() => Npy.ReadFloat32(P(name)));
            Assert.True(e is InvalidDataException, $"{name}: got {e.GetType().Name}: {e.Message}");
            Assert.Contains(P(name), e.Message);
            Assert.Contains(fragment, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        static byte[] File1(string dict, int dataBytes, byte major = 1)
        {
            var h = Encoding.ASCII.GetBytes(dict + "\n");
            var pre = major == 1 ? new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)h.Length, (byte)(h.Length >> 8) }
                                 : new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', major, 0, (byte)h.Length, (byte)(h.Length >> 8), 0, 0 };
            return [.. pre, .. h, .. new byte[dataBytes]];
        }
        Expect("magic.npy", Encoding.ASCII.GetBytes("PK\x03\x04 this is a zip"), "bad magic");
        Expect("empty.npy", [], "bad magic");
        Expect("version.npy", File1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, major: 9), "version 9.0");
        var longHeader = new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 2, 0, 0, 0, 0, 0x40 };
        Expect("long.npy", [.. longHeader, .. new byte[100]], "over the 10000-byte limit");
        Expect("truncheader.npy", File1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 0)[..30], "truncated");
        Expect("short.npy", File1("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 47), "needs 48 data bytes, file has 47");
        Expect("long_data.npy", File1("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 52), "file has 52");
        Expect("dtype.npy", File1("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16), "unsupported dtype '|O'");
        Expect("fortran.npy", File1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "fortran_order is True");
        Expect("notdict.npy", File1("[1, 2, 3]", 0), "not a dict literal");
        Expect("badshape.npy", File1("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", 0), "bad dimension");
        Expect("nokey.npy", File1("{'descr': '<f4', 'shape': (2,), }", 8), "lacks");
        Expect("overflow.npy", File1("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 8), "overflow.npy");
        Assert.Contains(P("missing.npy"), Assert.Throws<FileNotFoundException>(() => Npy.ReadFloat32(P("missing.npy"))).Message);
    }

    [Fact]
    public void WriteRejectsShapeMismatch()
    {
        var e = Assert.Throws<ArgumentException>(() => Npy.Write(P("x.npy"), new float[6], 4, 2));
        Assert.Contains("x.npy", e.Message);
        Assert.False(File.Exists(P("x.npy")));
    }
}
