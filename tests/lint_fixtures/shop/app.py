from pynenc import Pynenc

app = Pynenc()
